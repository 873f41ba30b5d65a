//! The renderer of `envoy/bootstrap.yaml`: `{{VAR}}` placeholders and repeated blocks.
//!
//! A block is the lines between `#>> NAME` and `#<< NAME` (each alone on its line, indentation
//! allowed). It is repeated once per item of the list `NAME` in the scope; an item's variables
//! shadow the enclosing ones. A flag is a list of zero or one empty item. An unknown variable or
//! block, or an unclosed block, is an error: a typo never renders silently. Comment lines (first
//! non-blank character `#`) are copied verbatim.

use anyhow::{anyhow, bail, Context as _, Result};
use std::collections::BTreeMap;

/// Variables and lists visible while rendering.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub vars: BTreeMap<String, String>,
    pub lists: BTreeMap<String, Vec<Scope>>,
}

impl Scope {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a variable (builder style).
    pub fn var(mut self, name: &str, value: impl ToString) -> Self {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }

    /// Adds an item to list `name` (builder style).
    pub fn item(mut self, name: &str, item: Scope) -> Self {
        self.lists.entry(name.to_string()).or_default().push(item);
        self
    }
}

/// Renders `template` in `scope`.
pub fn render(template: &str, scope: &Scope) -> Result<String> {
    let lines: Vec<&str> = template.lines().collect();
    let mut out = String::with_capacity(template.len() * 2);
    render_lines(&lines, &[scope], &mut out)?;
    Ok(out)
}

fn block_marker<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let name = line.trim().strip_prefix(marker)?.trim();
    (!name.is_empty()).then_some(name)
}

fn render_lines(lines: &[&str], scopes: &[&Scope], out: &mut String) -> Result<()> {
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(name) = block_marker(line, "#>>") {
            let end = find_block_end(lines, i, name)?;
            let items = scopes
                .iter()
                .rev()
                .find_map(|s| s.lists.get(name))
                .ok_or_else(|| {
                    anyhow!("template line {}: no list or flag named {name:?}", i + 1)
                })?;
            for item in items {
                let mut inner: Vec<&Scope> = scopes.to_vec();
                inner.push(item);
                render_lines(&lines[i + 1..end], &inner, out)?;
            }
            i = end + 1;
            continue;
        }
        if let Some(name) = block_marker(line, "#<<") {
            bail!(
                "template line {}: `#<< {name}` without a matching `#>> {name}`",
                i + 1
            );
        }
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str(
                &substitute(line, scopes).with_context(|| format!("template line {}", i + 1))?,
            );
        }
        out.push('\n');
        i += 1;
    }
    Ok(())
}

fn find_block_end(lines: &[&str], start: usize, name: &str) -> Result<usize> {
    let mut depth = 0usize;
    for (j, line) in lines.iter().enumerate().skip(start + 1) {
        if block_marker(line, "#>>") == Some(name) {
            depth += 1;
        } else if block_marker(line, "#<<") == Some(name) {
            if depth == 0 {
                return Ok(j);
            }
            depth -= 1;
        }
    }
    bail!(
        "template line {}: block `#>> {name}` is never closed",
        start + 1
    )
}

fn substitute(line: &str, scopes: &[&Scope]) -> Result<String> {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| anyhow!("unclosed `{{{{` in {line:?}"))?;
        let name = after[..close].trim();
        let value = scopes
            .iter()
            .rev()
            .find_map(|s| s.vars.get(name))
            .ok_or_else(|| anyhow!("no value for placeholder {{{{{name}}}}}"))?;
        out.push_str(value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_blocks_and_substitutes() {
        let t = "a: {{X}}\n#>> w\n- {{N}} {{X}}\n#<< w\nend\n";
        let s = Scope::new()
            .var("X", 1)
            .item("w", Scope::new().var("N", "p"))
            .item("w", Scope::new().var("N", "q").var("X", 2));
        assert_eq!(render(t, &s).unwrap(), "a: 1\n- p 1\n- q 2\nend\n");
    }

    #[test]
    fn flags_and_errors() {
        let t = "#>> f\nyes\n#<< f\n";
        assert_eq!(
            render(t, &Scope::new().item("f", Scope::new())).unwrap(),
            "yes\n"
        );
        assert_eq!(
            render(
                t,
                &Scope {
                    lists: [("f".into(), vec![])].into(),
                    ..Scope::new()
                }
            )
            .unwrap(),
            ""
        );
        assert!(render(t, &Scope::new()).is_err());
        assert!(render("{{NOPE}}\n", &Scope::new()).is_err());
        assert!(render("#>> w\nx\n", &Scope::new().item("w", Scope::new())).is_err());
        assert!(render("#<< w\n", &Scope::new()).is_err());
    }
}
