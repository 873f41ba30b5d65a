//! The Calico YAML loader (`alp_calico::load_texts_all`, what `load_path` runs on each file's
//! text: document splitting, strict decoding, defaults, validation) and the compiler from a
//! loaded set to the messages Felix would send.
//!
//! Invariants:
//! * `load_texts` fails exactly when `load_texts_all` reports problems;
//! * every problem names the file and a line of the text (1-based; the line after the last for
//!   an error at the end of the input);
//! * for each workload of a set that loaded, `compile` ends its messages with `inSync`, and
//!   those messages survive protobuf JSON and the rest of `util::replay_and_decide`.

use alp_calico::{compile, load_texts, load_texts_all, workload_names};
use alp_felix::wire::felix::to_dataplane::Payload;
use alp_felix::{json, ToDataplane};

const FILE: &str = "fuzz.yaml";

pub fn fuzz(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let files = [(FILE, &*text)];
    let (set, problems) = load_texts_all(&files);
    assert_eq!(
        load_texts(&files).is_ok(),
        problems.is_empty(),
        "load_texts and load_texts_all disagree"
    );
    // YAML's line breaks: LF, CR, CRLF, and (YAML 1.1, libyaml) NEL, LS and PS. An error at the
    // end of the input is on the line after the last; libyaml also ends an unterminated last
    // line before its end of stream.
    let breaks = ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'];
    let unterminated = !text.is_empty() && !text.ends_with(breaks);
    let lines = text.replace("\r\n", "\n").matches(breaks).count() + 1 + usize::from(unterminated);
    for problem in &problems {
        assert_eq!(problem.file, FILE, "{problem}");
        assert!(
            (1..=lines).contains(&problem.line),
            "problem on line {} of {lines}: {problem}",
            problem.line
        );
    }
    if !problems.is_empty() {
        return;
    }
    for workload in workload_names(&set) {
        let Some((namespace, name)) = workload.split_once('/') else {
            panic!("workload name {workload:?} is not namespace/name");
        };
        let Ok(messages) = compile(&set, namespace, name) else {
            continue;
        };
        assert!(
            matches!(
                messages.last().and_then(|m| m.payload.as_ref()),
                Some(Payload::InSync(_))
            ),
            "{workload}: messages do not end in inSync"
        );
        for message in &messages {
            let value = serde_json::to_value(message)
                .unwrap_or_else(|e| panic!("{message:?} does not serialise: {e}"));
            let again: ToDataplane = json::from_value(value.clone())
                .unwrap_or_else(|e| panic!("{value} does not parse: {e}"));
            assert_eq!(&again, message, "{value}");
        }
        crate::util::replay_and_decide(&messages);
    }
}
