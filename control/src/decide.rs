//! Deciding one request as the filter does around the engine, shared by `control check` and
//! `control ext-authz`: the engine's options (D12 trust domains, [`EngineArgs`]) and what
//! happens to a non-canonical request path (D10, spec section 5 "Forwarded path").
//!
//! * [`NonCanonicalPath::Rewrite`] (the filter's default): a non-canonical path is rewritten to
//!   its canonical form (query kept) and the request is decided on that path.
//! * [`NonCanonicalPath::Reject`] (the filter's `non_canonical_path: reject`, and always
//!   `ext-authz`, which cannot change what Envoy forwards): a non-canonical path is refused with
//!   `BadRequestPath` (400 `invalid request path`).
//!
//! Only a path that starts with `/` and normalises is looked at; anything else is decided as
//! given (the engine answers `BadRequestPath` where a path rule is reached). Before the first
//! in-sync snapshot every request is `NotInSync`, as in the filter, which reads no request
//! attribute then.

use alp_engine::decision::{Cause, Origin};
use alp_engine::path::NonCanonicalPath;
use alp_engine::{Decision, Engine, Http, Options, Request, TrustDomains, Verdict};
use clap::Args;

/// The engine settings `check` and `ext-authz` share (the filter's plugin settings).
#[derive(Args, Debug, Clone, Default)]
pub struct EngineArgs {
    /// Accept peer principals only from this SPIFFE trust domain (repeatable; D12, the filter's
    /// `trust_domains`). A principal from any other is an invalid peer identity (403). Without
    /// it every trust domain is accepted, as upstream.
    #[arg(long = "trust-domain", value_name = "TD", value_parser = parse_trust_domain)]
    pub trust_domains: Vec<String>,
}

impl EngineArgs {
    /// The engine options these flags select; `staged` as asked for by the caller.
    pub fn options(&self, staged: bool) -> Options {
        Options {
            staged,
            trust_domains: TrustDomains::new(self.trust_domains.iter().cloned()),
        }
    }
}

/// A trust domain as the filter's configuration accepts one: not empty, no `/`.
fn parse_trust_domain(text: &str) -> Result<String, String> {
    if text.is_empty() || text.contains('/') {
        return Err(format!(
            "{text:?} is not a trust domain such as \"cluster.local\" (not empty, no '/')"
        ));
    }
    Ok(text.to_string())
}

/// The request path, when it is non-canonical: what it would be forwarded as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonCanonical {
    /// The canonical path plus the original query (`alp_engine::path::forwarded_path`).
    pub forwarded: String,
    /// `true`: rewritten and decided on `forwarded`; `false`: refused (reject mode).
    pub rewritten: bool,
}

/// One decision, and what happened to the request path on the way.
#[derive(Debug, Clone)]
pub struct Decided {
    pub decision: Decision,
    /// The staged rehearsal's decision (`None` unless the engine was built with it), made on the
    /// same (possibly rewritten) path.
    pub staged: Option<Decision>,
    /// `Some` when the request has HTTP attributes whose path is non-canonical.
    pub non_canonical: Option<NonCanonical>,
}

impl Decided {
    /// Whether the path was refused for being non-canonical (reject mode).
    pub fn rejected_path(&self) -> bool {
        self.non_canonical.as_ref().is_some_and(|n| !n.rewritten)
    }
}

/// The decision of a path refused for being non-canonical.
pub const NON_CANONICAL_REJECTED: Decision = Decision {
    verdict: Verdict::BadRequestPath,
    origin: Origin::Precheck,
    cause: Cause::BadPath,
};

/// The path `http` would be forwarded as instead, when it is non-canonical (a path that does not
/// start with `/` or does not normalise is never rewritten).
pub fn forwarded_path(http: &Http<'_>) -> Option<String> {
    alp_engine::path::forwarded_path(http.path).ok().flatten()
}

/// Decides `request` as the filter does in `mode`.
pub fn decide(engine: &Engine, request: &Request<'_>, mode: NonCanonicalPath) -> Decided {
    let forwarded = match (engine.version(), &request.http) {
        (Some(_), Some(http)) => forwarded_path(http),
        _ => None,
    };
    let Some(forwarded) = forwarded else {
        let decision = engine.decide(request);
        let staged = engine.decide_staged(request, &decision);
        return Decided {
            decision,
            staged,
            non_canonical: None,
        };
    };
    match mode {
        NonCanonicalPath::Reject => Decided {
            decision: NON_CANONICAL_REJECTED,
            staged: engine.staged_requested().then_some(NON_CANONICAL_REJECTED),
            non_canonical: Some(NonCanonical {
                forwarded,
                rewritten: false,
            }),
        },
        NonCanonicalPath::Rewrite => {
            let rewritten = Request {
                http: request.http.map(|h| Http {
                    path: forwarded.as_str(),
                    ..h
                }),
                ..*request
            };
            let decision = engine.decide(&rewritten);
            let staged = engine.decide_staged(&rewritten, &decision);
            Decided {
                decision,
                staged,
                non_canonical: Some(NonCanonical {
                    forwarded,
                    rewritten: true,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alp_engine::Peer;

    /// Allows GET on prefix `/public`, denies everything else; one staged policy allowing all.
    fn engine(options: &Options) -> Engine {
        let updates = r#"
{"activePolicyUpdate":{"id":{"name":"p","kind":"GlobalNetworkPolicy"},"policy":{"inboundRules":[{"action":"allow","httpMatch":{"methods":["GET"],"paths":[{"prefix":"/public"}]}}]}}}
{"activePolicyUpdate":{"id":{"name":"s","kind":"StagedGlobalNetworkPolicy"},"policy":{"inboundRules":[{"action":"allow"}]}}}
{"workloadEndpointUpdate":{"id":{"workloadId":"default/w"},"endpoint":{"tiers":[{"name":"default","ingressPolicies":[{"name":"s","kind":"StagedGlobalNetworkPolicy"},{"name":"p","kind":"GlobalNetworkPolicy"}]}]}}}
{"inSync":{}}
"#;
        let messages = alp_felix::updates::parse_updates(updates).unwrap();
        let engine = alp_felix::engine_from_updates_with(&messages, options);
        assert!(engine.version().is_some(), "in sync");
        engine
    }

    fn get(path: &str) -> Request<'_> {
        Request {
            source: Peer {
                principal: "spiffe://cluster.local/ns/default/sa/customer",
                ..Peer::default()
            },
            destination: Peer::default(),
            protocol: alp_engine::protocol::TCP,
            http: Some(Http {
                method: "GET",
                path,
                host: "",
            }),
        }
    }

    #[test]
    fn rewrite_and_reject_non_canonical_paths() {
        let engine = engine(&Options {
            staged: true,
            ..Options::default()
        });
        // (path, rewrite-mode verdict, forwarded path when non-canonical)
        let cases: &[(&str, Verdict, Option<&str>)] = &[
            ("/public/a", Verdict::Allow, None),
            ("/public/", Verdict::Allow, None),
            ("/public/a?q=1", Verdict::Allow, None),
            ("/public%2Fa", Verdict::PolicyDenied, None),
            (
                "/admin/../public/x?q=1",
                Verdict::Allow,
                Some("/public/x?q=1"),
            ),
            ("/public//x", Verdict::Allow, Some("/public/x")),
            ("/public/./x;p=1", Verdict::Allow, Some("/public/x;p=1")),
            ("/public/../admin", Verdict::PolicyDenied, Some("/admin")),
            ("/public\\x", Verdict::Allow, Some("/public/x")),
            // Ambiguous or not normalisable: decided as given, never rewritten.
            ("/admin/..%3B/public", Verdict::BadRequestPath, None),
            ("/public%252fx", Verdict::BadRequestPath, None),
            // Not starting with `/`: decided as given.
            ("\\public\\..\\admin", Verdict::BadRequestPath, None),
            ("*", Verdict::BadRequestPath, None),
        ];
        for &(path, verdict, forwarded) in cases {
            let got = decide(&engine, &get(path), NonCanonicalPath::Rewrite);
            assert_eq!(got.decision.verdict, verdict, "{path}");
            assert_eq!(
                got.non_canonical.as_ref().map(|n| n.forwarded.as_str()),
                forwarded,
                "{path}"
            );
            assert!(
                got.non_canonical.as_ref().is_none_or(|n| n.rewritten),
                "{path}"
            );
            assert!(!got.rejected_path());
            assert!(got.staged.is_some(), "{path}: staged decided too");

            let got = decide(&engine, &get(path), NonCanonicalPath::Reject);
            let want = if forwarded.is_some() {
                Verdict::BadRequestPath
            } else {
                verdict
            };
            assert_eq!(got.decision.verdict, want, "{path} (reject)");
            assert_eq!(got.rejected_path(), forwarded.is_some(), "{path} (reject)");
            if forwarded.is_some() {
                assert_eq!(
                    got.staged.map(|s| s.verdict),
                    Some(Verdict::BadRequestPath),
                    "{path} (reject, staged)"
                );
            } else {
                assert!(got.staged.is_some(), "{path} (reject, staged)");
            }
        }
    }

    #[test]
    fn connection_checks_and_not_in_sync_are_never_rewritten() {
        let engine = engine(&Options::default());
        let tcp = Request {
            http: None,
            ..get("")
        };
        let got = decide(&engine, &tcp, NonCanonicalPath::Reject);
        assert_eq!(
            (got.decision.verdict, got.non_canonical),
            (Verdict::PolicyDenied, None)
        );
        let got = decide(
            &Engine::not_in_sync(),
            &get("/a/../b"),
            NonCanonicalPath::Reject,
        );
        assert_eq!(
            (got.decision.verdict, got.non_canonical),
            (Verdict::NotInSync, None)
        );
    }

    #[test]
    fn trust_domains() {
        let args = EngineArgs {
            trust_domains: vec!["cluster.local".into()],
        };
        let pinned = engine(&args.options(false));
        assert_eq!(
            decide(&pinned, &get("/public"), NonCanonicalPath::Rewrite)
                .decision
                .verdict,
            Verdict::Allow
        );
        let other = Request {
            source: Peer {
                principal: "spiffe://evil.example/ns/default/sa/customer",
                ..Peer::default()
            },
            ..get("/public")
        };
        assert_eq!(
            decide(&pinned, &other, NonCanonicalPath::Rewrite)
                .decision
                .verdict,
            Verdict::InvalidPeerIdentity
        );
        let any = engine(&EngineArgs::default().options(false));
        assert_eq!(
            decide(&any, &other, NonCanonicalPath::Rewrite)
                .decision
                .verdict,
            Verdict::Allow
        );
        assert!(parse_trust_domain("").is_err());
        assert!(parse_trust_domain("spiffe://cluster.local").is_err());
        assert_eq!(
            parse_trust_domain("cluster.local").as_deref(),
            Ok("cluster.local")
        );
    }
}
