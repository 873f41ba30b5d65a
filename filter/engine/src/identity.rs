//! Peer identity from a certificate principal (spec section 3 "Principals", D2).

/// The peer a principal names. Both fields empty: a plaintext peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    pub namespace: String,
    pub service_account: String,
}

impl Peer {
    /// A plaintext peer (empty principal).
    pub fn is_plaintext(&self) -> bool {
        self.namespace.is_empty() && self.service_account.is_empty()
    }
}

/// A non-empty principal that is not `spiffe://<td>/ns/<ns>/sa/<sa>` (verdict
/// `InvalidPeerIdentity`). Carries no text: the principal is peer-controlled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("principal is not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>")]
pub struct InvalidPrincipal;

/// Parse a principal: `""` is plaintext; otherwise exactly
/// `spiffe://<td>/ns/<ns>/sa/<sa>` with lower-case literals and every part non-empty and free of
/// `/` (any trust domain; namespace and service account kept case-sensitive).
pub fn parse_principal(principal: &str) -> Result<Peer, InvalidPrincipal> {
    parse_principal_ref(principal).map(|(namespace, service_account)| Peer {
        namespace: namespace.to_owned(),
        service_account: service_account.to_owned(),
    })
}

/// [`parse_principal`] without allocating: `(namespace, service_account)` borrowed from
/// `principal`, both `""` for plaintext.
pub fn parse_principal_ref(principal: &str) -> Result<(&str, &str), InvalidPrincipal> {
    parse_principal_parts(principal)
        .map(|(_, namespace, service_account)| (namespace, service_account))
}

/// `(trust_domain, namespace, service_account)` of a principal, all `""` for plaintext.
pub fn parse_principal_parts(principal: &str) -> Result<(&str, &str, &str), InvalidPrincipal> {
    if principal.is_empty() {
        return Ok(("", "", ""));
    }
    let rest = principal
        .strip_prefix("spiffe://")
        .ok_or(InvalidPrincipal)?;
    let mut parts = rest.split('/');
    let (Some(td), Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(InvalidPrincipal);
    };
    if td.is_empty() || ns.is_empty() || sa.is_empty() {
        return Err(InvalidPrincipal);
    }
    Ok((td, ns, sa))
}

/// The trust domains a principal may come from (D12). Empty: any, as upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustDomains(Vec<String>);

impl TrustDomains {
    /// Any trust domain.
    pub fn any() -> Self {
        TrustDomains::default()
    }

    pub fn new(domains: impl IntoIterator<Item = impl Into<String>>) -> Self {
        TrustDomains(domains.into_iter().map(Into::into).collect())
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Whether a principal's trust domain is accepted (exact, as SPIFFE trust domains are
    /// lower-case).
    pub fn accepts(&self, trust_domain: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|d| d == trust_domain)
    }

    /// The peer `(namespace, service_account)` of a principal, or `InvalidPrincipal` when it is
    /// malformed (D2) or from a trust domain not accepted (D12). Plaintext is `("", "")`.
    pub fn peer<'p>(&self, principal: &'p str) -> Result<(&'p str, &'p str), InvalidPrincipal> {
        let (td, ns, sa) = parse_principal_parts(principal)?;
        if !principal.is_empty() && !self.accepts(td) {
            return Err(InvalidPrincipal);
        }
        Ok((ns, sa))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn principal_table() {
        let table: &[(&str, Option<(&str, &str)>)] = &[
            ("", Some(("", ""))),
            (
                "spiffe://cluster.local/ns/default/sa/web",
                Some(("default", "web")),
            ),
            ("spiffe://td/ns/a/sa/b", Some(("a", "b"))),
            (
                "spiffe://other.domain/ns/Prod/sa/Api",
                Some(("Prod", "Api")),
            ),
            ("spiffe://x/ns/ns/sa/sa", Some(("ns", "sa"))),
            (
                "spiffe://x/ns/a.b-c_d/sa/e:f@g%20",
                Some(("a.b-c_d", "e:f@g%20")),
            ),
            ("spiffe://x:8080/ns/a/sa/b", Some(("a", "b"))),
            // Wrong literals or case.
            ("SPIFFE://td/ns/a/sa/b", None),
            ("spiffe:/td/ns/a/sa/b", None),
            ("spiffe//td/ns/a/sa/b", None),
            ("spiffe://td/NS/a/sa/b", None),
            ("spiffe://td/ns/a/SA/b", None),
            ("spiffe://td/namespace/a/sa/b", None),
            ("spiffe://td/sa/b/ns/a", None),
            ("https://td/ns/a/sa/b", None),
            // Empty parts.
            ("spiffe:///ns/a/sa/b", None),
            ("spiffe://td/ns//sa/b", None),
            ("spiffe://td/ns/a/sa/", None),
            ("spiffe://", None),
            ("spiffe://td", None),
            ("spiffe://td/ns/a", None),
            ("spiffe://td/ns/a/sa", None),
            // Extra segments or slashes.
            ("spiffe://td/ns/a/sa/b/", None),
            ("spiffe://td/ns/a/sa/b/c", None),
            ("spiffe://td/x/ns/a/sa/b", None),
            ("spiffe://td//ns/a/sa/b", None),
            ("spiffe://td/ns/a/b/sa/c", None),
            // Surroundings.
            (" spiffe://td/ns/a/sa/b", None),
            ("spiffe://td/ns/a/sa/b ", Some(("a", "b "))),
            ("web", None),
            ("CN=web", None),
            ("web.default.svc.cluster.local", None),
            ("/", None),
        ];
        for (principal, want) in table {
            let got = parse_principal(principal);
            match want {
                Some((ns, sa)) => assert_eq!(
                    got,
                    Ok(Peer {
                        namespace: (*ns).to_owned(),
                        service_account: (*sa).to_owned()
                    }),
                    "{principal:?}"
                ),
                None => assert_eq!(got, Err(InvalidPrincipal), "{principal:?}"),
            }
            assert_eq!(parse_principal_ref(principal).ok(), *want, "{principal:?}");
        }
        assert!(parse_principal("").is_ok_and(|p| p.is_plaintext()));
        assert!(parse_principal("spiffe://t/ns/a/sa/b").is_ok_and(|p| !p.is_plaintext()));
    }

    #[test]
    fn trust_domains_pin_principals() {
        let any = TrustDomains::any();
        let mesh = TrustDomains::new(["cluster.local", "prod.example"]);
        let evil = "spiffe://evil.example/ns/default/sa/admin";
        let good = "spiffe://cluster.local/ns/default/sa/admin";
        assert_eq!(any.peer(evil), Ok(("default", "admin")));
        assert_eq!(mesh.peer(evil), Err(InvalidPrincipal));
        assert_eq!(mesh.peer(good), Ok(("default", "admin")));
        assert_eq!(mesh.peer("spiffe://prod.example/ns/a/sa/b"), Ok(("a", "b")));
        assert_eq!(
            mesh.peer("spiffe://Cluster.local/ns/a/sa/b"),
            Err(InvalidPrincipal)
        );
        assert_eq!(
            mesh.peer("spiffe://cluster.local.evil/ns/a/sa/b"),
            Err(InvalidPrincipal)
        );
        assert_eq!(
            mesh.peer(""),
            Ok(("", "")),
            "plaintext is not a trust-domain question"
        );
        assert_eq!(mesh.peer("web"), Err(InvalidPrincipal));
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn well_formed_round_trip(td in "[^/]{1,10}", ns in "[^/]{1,10}", sa in "[^/]{1,10}") {
            let principal = format!("spiffe://{td}/ns/{ns}/sa/{sa}");
            let (got_ns, got_sa) = parse_principal_ref(&principal).expect("well-formed");
            prop_assert_eq!(got_ns, ns.as_str());
            prop_assert_eq!(got_sa, sa.as_str());
        }

        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse_principal(&s);
            let _ = parse_principal(&format!("spiffe://{s}"));
        }
    }
}
