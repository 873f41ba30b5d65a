//! A YAML stream split into its documents, each with the line it starts on, so that problems
//! can name the line of what they are about.

/// A YAML document of a file: its text and its first line (1-based).
pub struct Document<'a> {
    pub text: &'a str,
    pub start_line: usize,
}

/// Splits a YAML stream on `---` / `...` lines at column 0.
pub fn split_documents(text: &str) -> Vec<Document<'_>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut docs = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker =
            bare == "---" || bare.starts_with("--- ") || bare == "..." || bare.starts_with("---\t");
        if is_marker {
            docs.push(Document {
                text: &text[start_byte..offset],
                start_line,
            });
            start_byte = offset + line.len();
            start_line = n + 2;
            // `--- {inline}` is rare in resource files; content after the marker is dropped.
        }
        offset += line.len();
    }
    docs.push(Document {
        text: &text[start_byte..],
        start_line,
    });
    docs.retain(|d| {
        d.text.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
    });
    docs
}
