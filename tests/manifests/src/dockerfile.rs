//! Dockerfile instructions, enough to check what an image copies and runs.

use anyhow::{Context as _, Result};
use std::path::Path;

/// One instruction: keyword (upper case) and its arguments (continuation lines joined).
#[derive(Clone, Debug, PartialEq)]
pub struct Instruction {
    pub line: usize,
    pub keyword: String,
    pub args: String,
}

impl Instruction {
    /// Whitespace-separated words (flags such as `--from=build` included).
    pub fn words(&self) -> Vec<&str> {
        self.args.split_whitespace().collect()
    }

    /// The JSON (exec) form's strings, if the arguments are a JSON array.
    pub fn exec_form(&self) -> Option<Vec<String>> {
        serde_json::from_str(&self.args).ok()
    }
}

pub fn parse(path: &Path) -> Result<Vec<Instruction>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = vec![];
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_none() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if line.starts_with('#') {
            pending = Some((start, acc));
            continue;
        }
        if let Some(body) = line.strip_suffix('\\') {
            acc.push_str(body);
            acc.push(' ');
            pending = Some((start, acc));
            continue;
        }
        acc.push_str(line);
        let (kw, args) = acc.split_once(char::is_whitespace).unwrap_or((&acc, ""));
        out.push(Instruction {
            line: start,
            keyword: kw.to_ascii_uppercase(),
            args: args.trim().to_string(),
        });
    }
    Ok(out)
}

/// The stages: each `FROM` with the instructions up to the next.
pub fn stages(instructions: &[Instruction]) -> Vec<Vec<Instruction>> {
    let mut out: Vec<Vec<Instruction>> = vec![];
    for ins in instructions {
        if ins.keyword == "FROM" || out.is_empty() {
            out.push(vec![]);
        }
        if let Some(last) = out.last_mut() {
            last.push(ins.clone());
        }
    }
    out
}

/// `COPY [--from=X] SRC... DST` as (from, sources, destination).
pub fn copy_parts(ins: &Instruction) -> Option<(Option<String>, Vec<String>, String)> {
    if ins.keyword != "COPY" {
        return None;
    }
    let mut from = None;
    let mut rest = vec![];
    for w in ins.words() {
        if let Some(f) = w.strip_prefix("--from=") {
            from = Some(f.to_string());
        } else if !w.starts_with("--") {
            rest.push(w.to_string());
        }
    }
    let dst = rest.pop()?;
    Some((from, rest, dst))
}
