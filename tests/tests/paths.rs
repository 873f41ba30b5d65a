//! What was decided is what is served (issue 11, semantics section 5 "Forwarded path", D10-D12),
//! against real Envoy in the three path modes a deployment can have:
//!
//! * `EnvoyNormalises`: the shipped bootstrap (Istio `DECODE_AND_MERGE_SLASHES`);
//! * `IstioBase`: Istio's default (`normalize_path` only, escaped slashes kept);
//! * `Raw`: no normalisation at all (`--raw-paths`, Istio `NONE`).
//!
//! Each mode runs one Envoy with two workloads, each with its own policy and an echo backend
//! (`alp_e2e::backend`) that records the request-target it read:
//!
//! * `allowpublic`: allow GET prefix `/public`, default Deny;
//! * `denyfirst`: deny glob `/admin/**`, deny template `/secret/{*rest}`, then allow prefix `/`.
//!
//! Every attack form of issue 11 and its reverse (`/admin/<trick>/public` and
//! `/public/<trick>/admin`) is sent byte-exact (a raw HTTP/1.1 client: no client-side
//! normalisation). For each, either the request was refused (400 or 403 from the filter, or
//! Envoy's own 400/404) and the backend saw nothing, or the backend received a path that is
//! canonical by the spec, that the policy allows, that no common server reading routes under a
//! denied area (`backend::areas`), and for which Envoy chose the route matching what the backend
//! read (the route is chosen after the filter rewrote the path). Without proxy normalisation
//! (`Raw`) the filter alone decides, so there the outcome must be exactly the spec's
//! (`alp_e2e::canonical`, checked against the conformance vectors): 400 for a path that fails
//! normalisation, the canonical path forwarded (or 400 with `non_canonical_path: reject`) for a
//! non-canonical one, 403 for a denied one.
//!
//! The identity tests: a client certificate with two URI SANs whose first is another trust
//! domain's `admin`, with and without `trust_domains`; forged `x-forwarded-client-cert` headers.

use alp_e2e::backend::{areas, Received};
use alp_e2e::canonical::{self, normalize, Normalized};
use alp_e2e::filter_stats::{wait_for_stats, AlpStats};
use alp_e2e::http::Conn;
use alp_e2e::policy::{ipset, single_policy};
use alp_e2e::stack::{StackOptions, Updates, WorkloadSpec};
use alp_e2e::{artifacts, PathMode, Request, Stack};
use serde_json::{json, Value};
use std::time::Duration;

const CASE_HEADER: &str = "x-alp-case";

/// What the filter does with a non-canonical path (`non_canonical_path`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NonCanonical {
    Rewrite,
    Reject,
}

/// A protected workload and what its policy allows.
struct Target {
    workload: &'static str,
    ip: &'static str,
    rules: fn() -> Value,
    /// Whether the policy allows a GET of this matching form.
    allows: fn(&Normalized) -> bool,
}

fn allow_public_rules() -> Value {
    json!([{"action": "allow", "httpMatch": {"methods": ["GET"], "paths": [{"prefix": "/public"}]}}])
}

fn deny_first_rules() -> Value {
    json!([
        {"action": "deny", "httpMatch": {"paths": [{"glob": "/admin/**"}]}},
        {"action": "deny", "httpMatch": {"paths": [{"template": "/secret/{*rest}"}]}},
        {"action": "allow", "httpMatch": {"paths": [{"prefix": "/"}]}},
    ])
}

const TARGETS: [Target; 2] = [
    Target {
        workload: "allowpublic",
        ip: "127.0.60.1",
        rules: allow_public_rules,
        allows: |n| n.under("/public"),
    },
    Target {
        workload: "denyfirst",
        ip: "127.0.60.2",
        rules: deny_first_rules,
        allows: |n| !n.under("/admin") && !n.under("/secret"),
    },
];

/// Areas no allowed request may reach under any server reading.
const DENIED_AREAS: [&str; 2] = ["admin", "secret"];

/// The tricks of issue 11 (and more of each family), with `{x}` the first segment and `{y}` the
/// second: every one is sent as `/admin/<trick>/public` and as `/public/<trick>/admin`.
const TRICKS: &[&str] = &[
    // `;` escaped: a dot segment for some servers, a name for others.
    "/{x}/..%3B/{y}",
    "/{x}/..%3Bx/{y}",
    "/{x}/%2e%2e%3B/{y}",
    "/{x}/%2E%2E%3b/{y}",
    "/{x}/.%3B/{y}",
    "/{x}/.%3B/../{y}",
    "/{x}/..%3B/{y}/",
    // Escaped slashes and backslashes.
    "/{x}/..%2F{y}",
    "/{x}/..%2f{y}",
    "/{x}/..%2F/{y}",
    "/{x}%2F..%2F{y}",
    "/{x}/..%5C{y}",
    "/{x}/..%5c{y}",
    "/{x}%5C..%5C{y}",
    "/{x}/%5C..%5C{y}",
    // Plain dot segments, merged and unmerged slashes.
    "/{x}/../{y}",
    "/{x}/./../{y}",
    "/{x}/a/../../{y}",
    "/{x}//..//{y}",
    "//{x}/../{y}",
    "/{x}/../{y}/",
    "/{x}/../{y}//",
    "/{x}/../{y}?q=/{x}",
    // Parameters.
    "/{x}/..;/{y}",
    "/{x}/..;x/{y}",
    "/{x};x/../{y}",
    "/{x}/;x/{y}",
    "/{x}/;x/../{y}",
    "/{x}/;/../{y}",
    "/;x/{x}/..;/{y}",
    // Encoded dots, double encoding.
    "/{x}/%2e%2e/{y}",
    "/{x}/%2E%2E/{y}",
    "/{x}/.%2e/{y}",
    "/{x}/%2e./{y}",
    "/{x}/%252e%252e/{y}",
    "/{x}/%252E%252E/{y}",
    "/{x}%252f..%252f{y}",
    "/{x}/%25%32%65%25%32%65/{y}",
    "/{x}/..%00/{y}",
    // Backslashes.
    "/{x}\\..\\{y}",
    "/{x}/..\\{y}",
    "\\{x}\\..\\{y}",
    "/{x}\\{y}",
];

/// Single paths: the trailing slash, parameters, encodings of the names themselves.
const SINGLES: &[&str] = &[
    "/admin",
    "/admin/",
    "/admin//",
    "/admin;x",
    "/admin/;x",
    "//admin",
    "/./admin",
    "/%61dmin",
    "/admin/%2e",
    "/admin/.",
    "/public/..",
    "/public/../",
    "/public/%2e%2e",
    "/public",
    "/public/",
    "/public/x",
    "/public//x",
    "/public/x;v=1",
    "/public;v=1/x",
    "/public?q=/admin",
    "/public/%78",
    "/public/%ff",
    "/secret",
    "/secret/",
    "/secret/x/y",
    "/public/../secret/x",
    "/secret/..%3B/public",
];

/// What a request must get, where the outcome does not depend on the mode's proxy
/// normalisation or where it does in a way worth pinning.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// 200, and the backend received exactly this request-target.
    Forward(&'static str),
    /// Refused with this status by the filter (its body), the backend saw nothing.
    Status(u16),
}

/// `(workload, path, [EnvoyNormalises, IstioBase, Raw])`.
type Control = (&'static str, &'static str, [Expect; 3]);

const CONTROLS: &[Control] = {
    use Expect::{Forward as F, Status as S};
    &[
        ("allowpublic", "/public/x", [F("/public/x"); 3]),
        ("allowpublic", "/public", [F("/public"); 3]),
        ("allowpublic", "/admin/x", [S(403); 3]),
        ("allowpublic", "/", [S(403); 3]),
        // Resolved by Envoy where it normalises, rewritten by the filter where it does not.
        ("allowpublic", "/admin/../public/x", [F("/public/x"); 3]),
        (
            "allowpublic",
            "/admin/../public/x?q=a/../b",
            [F("/public/x?q=a/../b"); 3],
        ),
        // `..;` is no dot segment for Envoy: the filter rewrites it in every mode.
        ("allowpublic", "/admin/..;/public/x", [F("/public/x"); 3]),
        (
            "allowpublic",
            "/admin/..;x/public/x?y",
            [F("/public/x?y"); 3],
        ),
        // Ambiguous in every mode.
        ("allowpublic", "/admin/..%3B/public", [S(400); 3]),
        ("allowpublic", "/admin/..%3Bx/public", [S(400); 3]),
        ("allowpublic", "/admin/%2e%2e%3B/public", [S(400); 3]),
        // Envoy unescapes %2F first where configured to; kept, it is ambiguous.
        (
            "allowpublic",
            "/admin/..%2Fpublic",
            [F("/public"), S(400), S(400)],
        ),
        (
            "allowpublic",
            "/admin/..%5Cpublic",
            [F("/public"), S(400), S(400)],
        ),
        (
            "allowpublic",
            "/public/..%2Fadmin",
            [S(403), S(400), S(400)],
        ),
        // Double encoding.
        ("allowpublic", "/public/%252e%252e/admin", [S(400); 3]),
        // Glob and template deny rules: non-UTF-8 once decoded, the trailing slash, the bare name.
        ("denyfirst", "/admin/%ff", [S(403); 3]),
        ("denyfirst", "/secret/%c0", [S(403); 3]),
        ("denyfirst", "/admin/", [S(403); 3]),
        ("denyfirst", "/admin", [S(403); 3]),
        ("denyfirst", "/secret", [S(403); 3]),
        ("denyfirst", "/secret/", [S(403); 3]),
        ("denyfirst", "/admin/x/y", [S(403); 3]),
        ("denyfirst", "/secret/a/b", [S(403); 3]),
        ("denyfirst", "/public/x", [F("/public/x"); 3]),
        ("denyfirst", "/other", [F("/other"); 3]),
        ("denyfirst", "/public/../admin/x", [S(403); 3]),
        ("denyfirst", "/public/..;/admin", [S(403); 3]),
        ("denyfirst", "/public/%2e%2e/secret/x", [S(403); 3]),
        // A limitation of every mode that keeps escaped slashes (BASE, NONE): `%2F` is part of a
        // segment's name (the spec), so a deny rule for `/admin/**` does not cover `/admin%2Fx`,
        // which is forwarded as sent; a backend that decodes `%2F` before it routes or serves
        // files (Python's http.server, Go's http.FileServer) reads `/admin/x`. Envoy's
        // UNESCAPE_AND_FORWARD (the shipped bootstrap, Istio DECODE_AND_MERGE_SLASHES) closes
        // it: docs/istio.md.
        (
            "denyfirst",
            "/admin%2Fx",
            [S(403), F("/admin%2Fx"), F("/admin%2Fx")],
        ),
        (
            "denyfirst",
            "/admin%5Cx",
            [S(403), F("/admin%5Cx"), F("/admin%5Cx")],
        ),
    ]
};

/// The requests forwarded with an escaped slash or backslash kept, whose reading by a
/// decoding backend the spec accepts (see the last controls): exempt from the area check.
fn kept_escaped_slash(received: &str) -> bool {
    let lower = received.to_ascii_lowercase();
    lower.contains("%2f") || lower.contains("%5c")
}

fn mode_index(mode: PathMode) -> usize {
    match mode {
        PathMode::EnvoyNormalises => 0,
        PathMode::IstioBase => 1,
        PathMode::Raw => 2,
    }
}

/// Every path sent to each workload: the tricks both ways, the singles, the controls.
fn cases(workload: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for t in TRICKS {
        for (x, y) in [
            ("admin", "public"),
            ("public", "admin"),
            ("secret", "public"),
        ] {
            out.push(t.replace("{x}", x).replace("{y}", y));
        }
    }
    out.extend(SINGLES.iter().map(|s| s.to_string()));
    out.extend(
        CONTROLS
            .iter()
            .filter(|(w, _, _)| *w == workload)
            .map(|(_, p, _)| p.to_string()),
    );
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// The route the bootstrap chooses for `:path` (path_separated_prefix `/admin`, `/public`).
fn route_for(path: &str) -> &'static str {
    let p = path.find(['?', '#']).map_or(path, |i| &path[..i]);
    let under = |prefix: &str| p == prefix || p.starts_with(&format!("{prefix}/"));
    if under("/admin") {
        "admin"
    } else if under("/public") {
        "public"
    } else {
        "other"
    }
}

/// What happened to one request.
#[derive(Debug)]
enum Seen {
    /// Refused before the upstream; `by_filter` when the body is the filter's.
    Refused {
        status: u16,
        body: String,
        by_filter: bool,
    },
    /// 200 from the backend, which received `received`.
    Reached { received: Received },
}

impl Seen {
    fn summary(&self) -> String {
        match self {
            Seen::Refused {
                status,
                body,
                by_filter,
            } => format!(
                "{status} {}{}",
                body.trim(),
                if *by_filter { "" } else { " (Envoy)" }
            ),
            Seen::Reached { received, .. } => format!(
                "200 -> backend {} (route {})",
                received.target,
                received.header("x-alp-route").unwrap_or("none")
            ),
        }
    }
}

const FILTER_BODIES: [(u16, &str); 3] = [
    (400, "invalid request path"),
    (403, "denied by policy"),
    (403, "invalid peer identity"),
];

/// Sends `path` byte-exact to `workload` and checks the mode-independent invariant; `Err` says
/// what was wrong.
fn observe(stack: &Stack, target: &Target, path: &str, id: &str) -> Result<Seen, String> {
    let addr = stack.addr(target.workload);
    let resp = Conn::tcp(addr, None, Duration::from_secs(10))
        .and_then(|mut c| c.request("GET", path, &[(CASE_HEADER, id)]))
        .map_err(|e| format!("client error: {e:#}"))?;
    let received = stack
        .backend(target.workload)
        .received_with(CASE_HEADER, id);
    match resp.status {
        400 | 403 | 404 => {
            if !received.is_empty() {
                return Err(format!(
                    "refused with {} but the backend received {:?}",
                    resp.summary(),
                    received.iter().map(|r| &r.target).collect::<Vec<_>>()
                ));
            }
            let body = resp.body.trim().to_string();
            let by_filter = FILTER_BODIES.contains(&(resp.status, body.as_str()));
            if resp.status == 403 && !by_filter {
                return Err(format!("403 that is not the filter's: {}", resp.summary()));
            }
            Ok(Seen::Refused {
                status: resp.status,
                body,
                by_filter,
            })
        }
        200 => {
            let [r] = received.as_slice() else {
                return Err(format!(
                    "200 but the backend recorded {} requests for it",
                    received.len()
                ));
            };
            let got = r.target.as_str();
            if resp.body != got {
                return Err(format!(
                    "the backend's echo {:?} is not what it recorded {got:?}",
                    resp.body
                ));
            }
            let Some(n) = normalize(got) else {
                return Err(format!(
                    "the backend received {got:?}, which fails normalisation"
                ));
            };
            if n.non_canonical {
                return Err(format!(
                    "the backend received {got:?}, which is not canonical (canonical: {})",
                    n.canonical
                ));
            }
            if !(target.allows)(&n) {
                return Err(format!(
                    "the backend received {got:?} (matching form {:?}), which the policy does not allow",
                    String::from_utf8_lossy(&n.matching)
                ));
            }
            let readings = areas(got);
            if !kept_escaped_slash(got) {
                if let Some(a) = DENIED_AREAS.iter().find(|a| readings.contains(**a)) {
                    return Err(format!(
                        "the backend received {got:?}, which a server reading routes under /{a} (readings: {readings:?})"
                    ));
                }
            }
            let route = r.header("x-alp-route").unwrap_or("none");
            if route != route_for(got) {
                return Err(format!(
                    "Envoy routed {got:?} as {route:?}, not as {:?}: the route was not chosen on the forwarded path",
                    route_for(got)
                ));
            }
            Ok(Seen::Reached {
                received: r.clone(),
            })
        }
        _ => Err(format!("unexpected {}", resp.summary())),
    }
}

/// The exact outcome the spec gives when the filter sees the path as sent (`Raw`).
fn spec_outcome(target: &Target, path: &str, nc: NonCanonical) -> Expect {
    match normalize(path) {
        None => Expect::Status(400),
        Some(n) if n.non_canonical && nc == NonCanonical::Reject => Expect::Status(400),
        Some(n) if !(target.allows)(&n) => Expect::Status(403),
        Some(_) => {
            // Leaked so Expect stays Copy with static strings; a test process is short-lived.
            let fwd = canonical::forwarded(path).expect("normalises");
            Expect::Forward(Box::leak(fwd.into_boxed_str()))
        }
    }
}

fn matches(seen: &Seen, want: Expect) -> bool {
    match (seen, want) {
        (Seen::Reached { received, .. }, Expect::Forward(p)) => received.target == p,
        (
            Seen::Refused {
                status, by_filter, ..
            },
            Expect::Status(s),
        ) => *by_filter && *status == s,
        _ => false,
    }
}

fn stack_for(mode: PathMode, nc: NonCanonical) -> Stack {
    let plugin_options = match nc {
        NonCanonical::Rewrite => String::new(),
        NonCanonical::Reject => r#""non_canonical_path":"reject""#.to_string(),
    };
    Stack::start(StackOptions {
        workloads: TARGETS
            .iter()
            .map(|t| {
                WorkloadSpec::new(
                    t.workload,
                    Updates::Messages(single_policy(t.workload, t.ip, vec![], (t.rules)())),
                )
            })
            .collect(),
        path_mode: mode,
        echo_backend: true,
        plugin_options,
        ..StackOptions::default()
    })
    .expect("start the stack")
}

/// `alp_noncanonical_paths_total{alp_outcome="<outcome>"}` once the filter's 100 ms stats flush
/// has caught up with at least `min`.
fn noncanonical_at_least(stack: &Stack, outcome: &str, min: u64) -> u64 {
    let count =
        |s: &AlpStats| s.metric("alp_noncanonical_paths_total", &[("alp_outcome", outcome)]);
    match wait_for_stats(&stack.envoy, |s| count(s) >= min) {
        Ok(s) | Err(s) => count(&s),
    }
}

fn run_mode(mode: PathMode, nc: NonCanonical) {
    let stack = stack_for(mode, nc);
    let mut report = vec![];
    let mut failures = vec![];
    let mut n = 0;
    // Requests the filter had to change or refuse for being non-canonical (Raw mode only).
    let (mut rewritten, mut rejected) = (0u64, 0u64);
    for target in &TARGETS {
        for path in cases(target.workload) {
            n += 1;
            let id = format!("{mode:?}-{}-{n}", target.workload);
            let seen = match observe(&stack, target, &path, &id) {
                Ok(s) => s,
                Err(e) => {
                    failures.push(format!("{} {path}: {e}", target.workload));
                    report.push(format!("{:11} {path:40} -> FAIL {e}", target.workload));
                    continue;
                }
            };
            report.push(format!(
                "{:11} {path:40} -> {}",
                target.workload,
                seen.summary()
            ));
            let control = CONTROLS
                .iter()
                .find(|(w, p, _)| *w == target.workload && *p == path)
                .map(|(_, _, e)| e[mode_index(mode)]);
            // Controls are for the default (rewrite); with reject, a non-canonical path the proxy
            // leaves alone is refused instead of forwarded.
            let mut wants: Vec<Expect> = control
                .filter(|_| nc == NonCanonical::Rewrite)
                .into_iter()
                .collect();
            // Without proxy normalisation the filter alone decides: exactly the spec's outcome,
            // unless Envoy's codec refused the request before any filter ran.
            let envoy_refused = matches!(
                seen,
                Seen::Refused {
                    by_filter: false,
                    ..
                }
            );
            if mode == PathMode::Raw && !envoy_refused {
                let spec = spec_outcome(target, &path, nc);
                if normalize(&path).is_some_and(|n| n.non_canonical) {
                    match spec {
                        Expect::Forward(_) => rewritten += 1,
                        Expect::Status(400) if nc == NonCanonical::Reject => rejected += 1,
                        _ => {}
                    }
                }
                wants.push(spec);
            }
            for want in wants {
                if !matches(&seen, want) {
                    failures.push(format!(
                        "{} {path}: expected {want:?}, got {}",
                        target.workload,
                        seen.summary()
                    ));
                }
            }
        }
    }
    alp_e2e::report(format!("paths {mode:?} {nc:?}:\n{}", report.join("\n")));
    if mode == PathMode::Raw && failures.is_empty() {
        let got = noncanonical_at_least(&stack, "rewritten", rewritten);
        match nc {
            NonCanonical::Rewrite => assert!(
                got >= rewritten,
                "alp_noncanonical_paths_total{{alp_outcome=\"rewritten\"}} is {got}, but {rewritten} requests were forwarded rewritten"
            ),
            NonCanonical::Reject => assert_eq!(got, 0, "reject mode rewrote paths"),
        }
        if nc == NonCanonical::Reject {
            let got = noncanonical_at_least(&stack, "rejected", rejected);
            assert!(
                got >= rejected,
                "alp_noncanonical_paths_total{{alp_outcome=\"rejected\"}} is {got}, but {rejected} non-canonical requests were refused"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{mode:?} ({nc:?}): {} of {n} requests wrong:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        stack.diagnostics(TARGETS[0].workload)
    );
}

#[test]
fn oracle_agrees_with_the_conformance_vectors() {
    let Some(file) = artifacts::conformance_file("unit_cases.json") else {
        eprintln!("no ../shared/conformance/unit_cases.json beside the project: skipped");
        return;
    };
    let all: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let vectors = all["normalize_http_path"]
        .as_array()
        .expect("normalize_http_path");
    assert!(vectors.len() > 20);
    for v in vectors {
        let input = v["input"].as_str().unwrap();
        let got = normalize(input);
        if v["ok"] != true {
            assert_eq!(got, None, "{input:?} must fail");
            continue;
        }
        let got = got.unwrap_or_else(|| panic!("{input:?} must normalise"));
        let matching = match v.get("normalized_hex").and_then(Value::as_str) {
            Some(hex) => (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>(),
            None => v["normalized"].as_str().unwrap().as_bytes().to_vec(),
        };
        assert_eq!(got.matching, matching, "{input:?}: matching form");
        assert_eq!(
            got.canonical,
            v["canonical"].as_str().unwrap(),
            "{input:?}: canonical"
        );
        assert_eq!(
            Value::Bool(got.non_canonical),
            v["non_canonical"],
            "{input:?}: non_canonical"
        );
    }
}

#[test]
fn envoy_normalises() {
    run_mode(PathMode::EnvoyNormalises, NonCanonical::Rewrite);
}

#[test]
fn istio_base() {
    run_mode(PathMode::IstioBase, NonCanonical::Rewrite);
}

#[test]
fn no_proxy_normalisation() {
    run_mode(PathMode::Raw, NonCanonical::Rewrite);
}

#[test]
fn no_proxy_normalisation_rejecting_non_canonical_paths() {
    run_mode(PathMode::Raw, NonCanonical::Reject);
}

// ---------------------------------------------------------------------------------------------
// Identity: which trust domain a principal is from, and headers that claim one.

const APP_IP: &str = "127.0.61.1";
/// The address of the `admin` workload's pods (the policy's IP set), and of another pod.
const ADMIN_POD: &str = "127.0.61.10";
const OTHER_POD: &str = "127.0.61.20";
const EVIL_ADMIN: &str = "spiffe://evil.example/ns/default/sa/admin";

fn identity_stack(trust_domains: bool) -> Stack {
    // Allow service account `admin`, from the admin pods' addresses (as Felix's IP set of the
    // account's pods would hold them); everything else falls to the default Deny.
    let rules = json!([{"action": "allow", "srcServiceAccountMatch": {"names": ["admin"]}, "srcIpSetIds": ["s:admin"]}]);
    let extra = vec![ipset("s:admin", "IP", &[ADMIN_POD])];
    Stack::start(StackOptions {
        workloads: vec![WorkloadSpec::new(
            "app",
            Updates::Messages(single_policy("app", APP_IP, extra, rules)),
        )],
        plugin_options: if trust_domains {
            r#""trust_domains":["cluster.local"]"#.into()
        } else {
            String::new()
        },
        ..StackOptions::default()
    })
    .expect("start the stack")
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

/// Forged claims to be `admin`: the header Envoy would set for an mTLS peer, and variants.
fn forge(req: Request) -> Request {
    req.header(
        "x-forwarded-client-cert",
        "By=spiffe://cluster.local/ns/default/sa/app;Hash=00;URI=spiffe://cluster.local/ns/default/sa/admin",
    )
    .header("x-forwarded-client-cert", "URI=spiffe://cluster.local/ns/default/sa/admin")
    .header("x-envoy-peer-metadata-id", "sidecar~127.0.61.10~admin")
}

/// (label, request, expected without trust_domains, expected with).
fn identity_cases(stack: &Stack) -> Vec<(&'static str, Request, &'static str, &'static str)> {
    let two_sans = stack
        .ca
        .issue_with_uris(
            "client-two-sans",
            &[EVIL_ADMIN, &alp_e2e::certs::spiffe_id("nobody")],
            false,
        )
        .unwrap();
    let from_admin_pod = |r: Request| r.from_ip(ip(ADMIN_POD));
    vec![
        (
            "admin of cluster.local",
            from_admin_pod(Request::get("/").transport(stack.mtls("admin").unwrap())),
            "200 app: ok",
            "200 app: ok",
        ),
        (
            "two URI SANs, the first evil.example's admin",
            from_admin_pod(Request::get("/").transport(stack.tls_with(Some(two_sans.clone())))),
            // As upstream: the first URI SAN is the principal, any trust domain.
            "200 app: ok",
            "403 invalid peer identity",
        ),
        (
            "two URI SANs, forged x-forwarded-client-cert",
            forge(from_admin_pod(
                Request::get("/").transport(stack.tls_with(Some(two_sans))),
            )),
            "200 app: ok",
            "403 invalid peer identity",
        ),
        (
            "nobody",
            from_admin_pod(Request::get("/").transport(stack.mtls("nobody").unwrap())),
            "403 denied by policy",
            "403 denied by policy",
        ),
        (
            "nobody, forged x-forwarded-client-cert",
            forge(from_admin_pod(
                Request::get("/").transport(stack.mtls("nobody").unwrap()),
            )),
            "403 denied by policy",
            "403 denied by policy",
        ),
        (
            "plaintext from another pod",
            Request::get("/").from_ip(ip(OTHER_POD)),
            "403 denied by policy",
            "403 denied by policy",
        ),
        (
            "plaintext from another pod, forged x-forwarded-client-cert",
            forge(Request::get("/").from_ip(ip(OTHER_POD))),
            "403 denied by policy",
            "403 denied by policy",
        ),
    ]
}

fn identity(trust_domains: bool) {
    let stack = identity_stack(trust_domains);
    let mut wrong = vec![];
    for (label, req, without, with) in identity_cases(&stack) {
        let want = if trust_domains { with } else { without };
        let got = stack.send("app", &req).unwrap().summary();
        if got != want {
            wrong.push(format!("{label}: expected {want}, got {got}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "trust_domains {}:\n{}\n{}",
        if trust_domains {
            "[cluster.local]"
        } else {
            "unset"
        },
        wrong.join("\n"),
        stack.diagnostics("app")
    );
}

#[test]
fn two_uri_sans_without_trust_domains_are_decided_as_upstream() {
    identity(false);
}

#[test]
fn two_uri_sans_from_another_trust_domain_are_refused_with_trust_domains() {
    identity(true);
}
