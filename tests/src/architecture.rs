//! The README's architecture picture, `docs/architecture.svg`, drawn from the description in
//! [`picture`]: boxes with lines of text, and labelled arrows between box edges. Regenerate with
//! `cargo run -p alp-e2e --bin architecture-svg > docs/architecture.svg`; a unit test fails when
//! the committed file differs from what this draws.

use std::fmt::Write as _;

/// A box: position and size (px), fill colour, a bold title and further lines.
struct Node {
    x: i32,
    y: i32,
    w: i32,
    h: i32,
    fill: &'static str,
    title: &'static str,
    lines: &'static [&'static str],
}

/// An arrow from one point to another, with a label near its middle (`dx`, `dy` offset).
struct Arrow {
    from: (i32, i32),
    to: (i32, i32),
    label: &'static [&'static str],
    dx: i32,
    dy: i32,
}

const WIDTH: i32 = 980;
const HEIGHT: i32 = 620;

fn nodes() -> Vec<Node> {
    vec![
        Node {
            x: 20,
            y: 40,
            w: 250,
            h: 92,
            fill: "#fff4d6",
            title: "Felix (calico-node)",
            lines: &["Policy Sync API, one Unix", "socket per pod (CSI volume)"],
        },
        Node {
            x: 20,
            y: 170,
            w: 250,
            h: 92,
            fill: "#fff4d6",
            title: "Without Kubernetes",
            lines: &["Calico v3 YAML (--policy)", "Felix updates (--updates)"],
        },
        Node {
            x: 350,
            y: 40,
            w: 300,
            h: 222,
            fill: "#e3f0ff",
            title: "control serve (per workload)",
            lines: &[
                "Felix client (gRPC), file sources",
                "store: pending / in sync (D8)",
                "snapshot: versioned, encoded",
                "HTTP long-poll for the filters",
                "/readyz /healthz /metrics",
                "same engine: check, validate,",
                "ext-authz (gRPC, no wasm)",
            ],
        },
        Node {
            x: 720,
            y: 40,
            w: 240,
            h: 150,
            fill: "#f1f1f1",
            title: "Operator CLI",
            lines: &[
                "control check: decide offline",
                "control validate: Calico YAML",
                "control version: module sha256",
                "(the same engine as the filter)",
            ],
        },
        Node {
            x: 230,
            y: 330,
            w: 560,
            h: 250,
            fill: "#e8f7e8",
            title: "Envoy (sidecar), one wasm VM per worker thread",
            lines: &[],
        },
        Node {
            x: 250,
            y: 370,
            w: 250,
            h: 92,
            fill: "#ffffff",
            title: "root context (lease holder)",
            lines: &["polls control, publishes", "the snapshot to shared data"],
        },
        Node {
            x: 520,
            y: 370,
            w: 250,
            h: 92,
            fill: "#ffffff",
            title: "shared data (per vm_id)",
            lines: &["snapshot + version, read and", "compiled once per VM"],
        },
        Node {
            x: 250,
            y: 478,
            w: 250,
            h: 86,
            fill: "#ffffff",
            title: "HTTP filter (per request)",
            lines: &["attributes -> engine ->", "continue | local reply"],
        },
        Node {
            x: 520,
            y: 478,
            w: 250,
            h: 86,
            fill: "#ffffff",
            title: "network filter (per connection)",
            lines: &["before tcp_proxy: engine ->", "continue | close"],
        },
        Node {
            x: 20,
            y: 440,
            w: 150,
            h: 70,
            fill: "#fde8e8",
            title: "client",
            lines: &["mTLS or plaintext"],
        },
        Node {
            x: 840,
            y: 440,
            w: 120,
            h: 70,
            fill: "#fde8e8",
            title: "workload",
            lines: &["the application"],
        },
    ]
}

fn arrows() -> Vec<Arrow> {
    vec![
        Arrow {
            from: (270, 86),
            to: (350, 86),
            label: &["ToDataplane"],
            dx: 0,
            dy: -8,
        },
        Arrow {
            from: (270, 216),
            to: (350, 216),
            label: &["files"],
            dx: 0,
            dy: -8,
        },
        Arrow {
            from: (420, 262),
            to: (420, 370),
            label: &["snapshot (HTTP,", "Unix socket)"],
            dx: -62,
            dy: -16,
        },
        Arrow {
            from: (500, 416),
            to: (520, 416),
            label: &[],
            dx: 0,
            dy: 0,
        },
        Arrow {
            from: (645, 462),
            to: (645, 478),
            label: &[],
            dx: 0,
            dy: 0,
        },
        Arrow {
            from: (600, 462),
            to: (420, 478),
            label: &[],
            dx: 0,
            dy: 0,
        },
        Arrow {
            from: (170, 475),
            to: (230, 475),
            label: &["requests,", "connections"],
            dx: 0,
            dy: -26,
        },
        Arrow {
            from: (790, 475),
            to: (840, 475),
            label: &["allowed"],
            dx: 0,
            dy: -8,
        },
    ]
}

/// `&`, `<`, `>` escaped for SVG text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG document.
pub fn picture() -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="13">"#
    );
    svg.push_str("<!-- Generated by tests/src/architecture.rs; do not edit by hand. -->\n");
    svg.push_str(
        r##"<defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#333"/></marker></defs>"##,
    );
    svg.push('\n');
    let _ = writeln!(
        svg,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##
    );
    for n in nodes() {
        let _ = writeln!(
            svg,
            r##"<rect x="{}" y="{}" width="{}" height="{}" rx="8" fill="{}" stroke="#555"/>"##,
            n.x, n.y, n.w, n.h, n.fill
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" font-weight="bold">{}</text>"#,
            n.x + 12,
            n.y + 22,
            escape(n.title)
        );
        for (i, line) in n.lines.iter().enumerate() {
            let y = n.y + 44 + 18 * i32::try_from(i).unwrap_or(0);
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{y}">{}</text>"#,
                n.x + 12,
                escape(line)
            );
        }
    }
    for a in arrows() {
        let _ = writeln!(
            svg,
            r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#333" stroke-width="1.6" marker-end="url(#head)"/>"##,
            a.from.0, a.from.1, a.to.0, a.to.1
        );
        let (mx, my) = (
            (a.from.0 + a.to.0) / 2 + a.dx,
            (a.from.1 + a.to.1) / 2 + a.dy,
        );
        for (i, line) in a.label.iter().enumerate() {
            let y = my + 16 * i32::try_from(i).unwrap_or(0);
            let _ = writeln!(
                svg,
                r##"<text x="{mx}" y="{y}" text-anchor="middle" font-size="12" fill="#333">{}</text>"##,
                escape(line)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_picture_is_what_this_draws() {
        let path = crate::artifacts::workspace_root().join("docs/architecture.svg");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == picture(),
            "{} is out of date: cargo run -p alp-e2e --bin architecture-svg > docs/architecture.svg",
            path.display()
        );
    }

    #[test]
    fn every_box_fits_the_canvas() {
        for n in nodes() {
            assert!(n.x >= 0 && n.y >= 0, "{}", n.title);
            assert!(n.x + n.w <= WIDTH && n.y + n.h <= HEIGHT, "{}", n.title);
            let lines = i32::try_from(n.lines.len()).unwrap();
            assert!(44 + 18 * (lines - 1) < n.h, "{}: text overflows", n.title);
        }
    }
}
