//! The name rules Calico's validator takes from Kubernetes (`k8s.io/apimachinery`
//! `util/validation`) and its own name formats, reimplemented: qualified names (label and
//! annotation keys), label values, RFC 1123 labels and subdomains, IANA service (port) names.
//! Each returns the reasons a value fails, in Kubernetes' words; none means valid.

/// Longest RFC 1123 subdomain (and resource name).
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
/// Longest RFC 1123 label (and tier name, label value, name part of a qualified name).
pub const DNS1123_LABEL_MAX: usize = 63;

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, without a length limit (Calico's `nameLabelFmt`).
pub fn is_label_format(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            lower_alnum(f) && lower_alnum(l) && b.iter().all(|&c| lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// `label(\.label)*` (Calico's `nameSubdomainFmt`), without a length limit.
pub fn is_subdomain_format(s: &str) -> bool {
    s.split('.').all(is_label_format)
}

/// Kubernetes `IsDNS1123Subdomain`.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if !is_subdomain_format(s) {
        errs.push(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character"
                .into(),
        );
    }
    errs
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            alnum(f)
                && alnum(l)
                && b.iter()
                    .all(|&c| alnum(c) || c == b'-' || c == b'_' || c == b'.')
        }
        _ => false,
    }
}

/// Kubernetes `IsQualifiedName`: `[prefix/]name`, the prefix an RFC 1123 subdomain, the name
/// at most 63 alphanumerics, `-`, `_` or `.` starting and ending alphanumeric.
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".into());
            } else {
                errs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|e| format!("prefix part {e}")),
                );
            }
            *name
        }
        _ => {
            errs.push(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and \
                 must start and end with an alphanumeric character, with an optional DNS \
                 subdomain prefix and '/' (e.g. 'example.com/MyName')"
                    .into(),
            );
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else if name.len() > DNS1123_LABEL_MAX {
        errs.push(format!(
            "name part must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !name.is_empty() && !is_qualified_name_part(name) {
        errs.push(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start \
             and end with an alphanumeric character"
                .into(),
        );
    }
    errs
}

/// Kubernetes `IsValidLabelValue`: empty, or at most 63 characters of the qualified-name form.
pub fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !s.is_empty() && !is_qualified_name_part(s) {
        errs.push(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', \
             '_' or '.', and must start and end with an alphanumeric character"
                .into(),
        );
    }
    errs
}

/// Kubernetes `IsValidPortName` (an IANA service name): at most 15 of `a-z`, `0-9`, `-`, at
/// least one letter, no leading, trailing or doubled `-`.
pub fn port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push("must be no more than 15 characters".into());
    }
    if !s.bytes().all(|b| lower_alnum(b) || b == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        for ok in [
            "a",
            "projectcalico.org/label",
            "projectcalico.org/Label",
            "A_b.c-D",
            &"x".repeat(63),
        ] {
            assert!(qualified_name(ok).is_empty(), "{ok}");
        }
        for bad in [
            "",
            "Projectcalico.org/label",
            "/a",
            "a/b/c",
            "-a",
            "a-",
            ".mylabel",
            "my!nvalid",
            &"x".repeat(64),
            "...",
        ] {
            assert!(!qualified_name(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn label_values() {
        assert!(label_value("").is_empty());
        assert!(label_value(&"x".repeat(63)).is_empty());
        assert!(!label_value(&"x".repeat(64)).is_empty());
        assert!(!label_value("a b").is_empty());
        assert!(!label_value("-a").is_empty());
    }

    #[test]
    fn port_names() {
        for ok in ["http", "h2", "a-b", "x123456789abcde"] {
            assert!(port_name(ok).is_empty(), "{ok}");
        }
        for bad in [
            "",
            "123",
            "Http",
            "a--b",
            "-a",
            "a-",
            "x123456789abcdef",
            "a_b",
        ] {
            assert!(!port_name(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(is_label_format("a-1"));
        assert!(!is_label_format("a.b"));
        assert!(is_subdomain_format("a.b-c.d"));
        assert!(!is_subdomain_format("a..b"));
        assert!(!is_subdomain_format("A"));
        assert!(!dns1123_subdomain(&"a".repeat(254)).is_empty());
    }
}
