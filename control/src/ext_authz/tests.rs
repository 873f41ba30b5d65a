//! A tonic client checking requests against `start` over a Unix socket.

use super::proto::envoy::config::core::v3::{
    address, socket_address, Address, Pipe, SocketAddress,
};
use super::proto::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use super::proto::envoy::service::auth::v3::{
    attribute_context, check_response, AttributeContext, CheckRequest, CheckResponse,
};
use super::*;
use crate::source::updates_file::UpdatesFile;
use alp_engine::Verdict;
use hyper_util::rt::TokioIo;
use std::path::Path;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

const CUSTOMER: &str = "spiffe://cluster.local/ns/default/sa/customer";

/// Tier `default` (default Deny): policy `customer` allows GET from service account `customer`.
const POLICY: &str = r#"
{"activePolicyUpdate":{"id":{"name":"customer","namespace":"","kind":"GlobalNetworkPolicy"},"policy":{"tier":"default","inboundRules":[{"action":"allow","srcServiceAccountMatch":{"names":["customer"]},"httpMatch":{"methods":["GET"]},"ruleId":"r0"}]}}}
{"serviceAccountUpdate":{"id":{"namespace":"default","name":"customer"},"labels":{"app":"customer"}}}
{"namespaceUpdate":{"id":{"name":"default"},"labels":{"kubernetes.io/metadata.name":"default"}}}
{"workloadEndpointUpdate":{"id":{"orchestratorId":"k8s","workloadId":"default/database","endpointId":"eth0"},"endpoint":{"profileIds":["kns.default"],"tiers":[{"name":"default","ingressPolicies":[{"name":"customer","namespace":"","kind":"GlobalNetworkPolicy"}],"defaultAction":"Deny"}]}}}
"#;
const IN_SYNC: &str = "{\"inSync\":{}}\n";

async fn client(socket: &Path) -> AuthorizationClient<Channel> {
    let path = socket.to_path_buf();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connects");
    AuthorizationClient::new(channel)
}

fn socket_address(ip: &str, port: u32) -> Option<Address> {
    Some(Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            protocol: socket_address::Protocol::Tcp as i32,
            address: ip.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
        })),
    })
}

fn request(principal: &str, method: Option<&str>, path: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(attribute_context::Peer {
                address: socket_address("10.0.0.1", 40000),
                principal: principal.into(),
                ..Default::default()
            }),
            destination: Some(attribute_context::Peer {
                address: socket_address("10.0.0.2", 8080),
                principal: "spiffe://cluster.local/ns/default/sa/database".into(),
                ..Default::default()
            }),
            request: method.map(|m| attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: m.into(),
                    path: path.into(),
                    host: "database".into(),
                    ..Default::default()
                }),
            }),
            context_extensions: Default::default(),
        }),
    }
}

/// (gRPC code, HTTP status of the denial or None, body).
type Outcome = (i32, Option<i32>, String);

/// The [`Outcome`] of a response.
fn outcome(r: &CheckResponse) -> Outcome {
    let code = r.status.as_ref().map_or(-1, |s| s.code);
    match &r.http_response {
        Some(check_response::HttpResponse::DeniedResponse(d)) => {
            let headers: Vec<_> = d
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .map(|h| (h.key.as_str(), h.value.as_str()))
                .collect();
            assert_eq!(headers, vec![("content-type", "text/plain")]);
            (code, d.status.as_ref().map(|s| s.code), d.body.clone())
        }
        Some(check_response::HttpResponse::OkResponse(_)) => (code, None, String::new()),
        None => (code, None, "no http_response".into()),
    }
}

async fn start_with(dir: &Path, updates: &str) -> (Running, AuthorizationClient<Channel>) {
    start_with_options(dir, updates, Options::default()).await
}

async fn start_with_options(
    dir: &Path,
    updates: &str,
    options: Options,
) -> (Running, AuthorizationClient<Channel>) {
    let file = dir.join("updates.jsonl");
    std::fs::write(&file, updates).unwrap();
    let socket = dir.join("authz.sock");
    let running = start(
        &Listen::Unix(socket.clone()),
        Box::new(UpdatesFile::new(file, Duration::from_millis(10))),
        options,
    )
    .await
    .unwrap();
    assert_eq!(running.address, format!("unix:{}", socket.display()));
    let client = client(&socket).await;
    (running, client)
}

async fn check_once(
    client: &mut AuthorizationClient<Channel>,
    req: CheckRequest,
) -> (i32, Option<i32>, String) {
    outcome(&client.check(req).await.expect("check answers").into_inner())
}

#[tokio::test]
async fn decides_like_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let (running, mut client) = start_with(dir.path(), &format!("{POLICY}{IN_SYNC}")).await;
    // The source replays and the compiler installs asynchronously: wait for the first allow.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = check_once(&mut client, request(CUSTOMER, Some("GET"), "/")).await;
        if got == (0, None, String::new()) {
            break;
        }
        assert_eq!(
            got,
            (14, Some(503), "policy not synchronised".into()),
            "only not-in-sync before the policy"
        );
        assert!(std::time::Instant::now() < deadline, "no policy after 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let denied = (7, Some(403), "denied by policy".to_string());
    assert_eq!(
        check_once(&mut client, request(CUSTOMER, Some("DELETE"), "/")).await,
        denied
    );
    assert_eq!(
        check_once(
            &mut client,
            request(
                "spiffe://cluster.local/ns/default/sa/summary",
                Some("GET"),
                "/"
            )
        )
        .await,
        denied
    );
    assert_eq!(
        check_once(
            &mut client,
            request("spiffe://cluster.local/default/customer", Some("GET"), "/")
        )
        .await,
        (7, Some(403), "invalid peer identity".into())
    );
    // No request.http: a connection-level check never matches an HTTP rule (D4).
    assert_eq!(
        check_once(&mut client, request(CUSTOMER, None, "")).await,
        denied
    );
    // An empty CheckRequest: plaintext, no addresses, no HTTP.
    assert_eq!(
        check_once(&mut client, CheckRequest::default()).await,
        denied
    );

    // A new policy file takes effect: everything from anyone is allowed by the profile now.
    std::fs::write(
        dir.path().join("updates.jsonl"),
        format!(
            "{}\n{}\n{IN_SYNC}",
            r#"{"activeProfileUpdate":{"id":{"name":"kns.default"},"profile":{"inboundRules":[{"action":"allow"}]}}}"#,
            r#"{"workloadEndpointUpdate":{"id":{"orchestratorId":"k8s","workloadId":"default/database","endpointId":"eth0"},"endpoint":{"profileIds":["kns.default"]}}}"#
        ),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while check_once(&mut client, request(CUSTOMER, Some("DELETE"), "/")).await
        != (0, None, String::new())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "new policy not in force after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let _ = running.shutdown.send(true);
    running.finished().await.unwrap();
    assert!(
        !dir.path().join("authz.sock").exists(),
        "socket removed on shutdown"
    );
}

#[tokio::test]
async fn not_in_sync_without_in_sync_message() {
    let dir = tempfile::tempdir().unwrap();
    let (running, mut client) = start_with(dir.path(), POLICY).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        check_once(&mut client, request(CUSTOMER, Some("GET"), "/")).await,
        (14, Some(503), "policy not synchronised".into())
    );
    let _ = running.shutdown.send(true);
    running.finished().await.unwrap();
}

#[test]
fn every_verdict_has_its_response() {
    for verdict in Verdict::ALL {
        let r = service::response(verdict);
        let (code, status, body) = outcome(&r);
        match verdict.status() {
            None => assert_eq!((code, status, body.as_str()), (0, None, "")),
            Some(s) => {
                assert_eq!(status, Some(i32::from(s)), "{verdict:?}");
                assert_eq!(body, verdict.body());
                assert_ne!(code, 0);
            }
        }
    }
}

#[test]
fn reads_addresses_and_protocol() {
    let engine = Engine::not_in_sync();
    let mut req = request(CUSTOMER, Some("GET"), "/");
    let attrs = req.attributes.as_mut().unwrap();
    attrs.source.as_mut().unwrap().address = Some(Address {
        address: Some(address::Address::Pipe(Pipe { path: "/x".into() })),
    });
    attrs.destination.as_mut().unwrap().address = socket_address("::ffff:10.1.2.3", 70000);
    let attrs = req.attributes.as_ref().unwrap();
    let (p, udp) = service_peer(attrs.source.as_ref());
    assert_eq!((p.address, p.port, udp), (None, 0, false));
    let (p, _) = service_peer(attrs.destination.as_ref());
    assert_eq!(
        p.address,
        "10.1.2.3".parse().ok(),
        "IPv4-mapped IPv6 is the IPv4 address"
    );
    assert_eq!(p.port, 0, "a port out of range is no port");
    let ok = attribute_context::Peer {
        address: socket_address("[::1]", 1),
        ..Default::default()
    };
    assert_eq!(
        service_peer(Some(&ok)).0.address,
        None,
        "brackets are not part of the address"
    );
    let v6 = attribute_context::Peer {
        address: socket_address("2001:db8::1", 443),
        ..Default::default()
    };
    let (p, _) = service_peer(Some(&v6));
    assert_eq!((p.address, p.port), ("2001:db8::1".parse().ok(), 443));
    // Not in sync whatever the attributes.
    assert_eq!(outcome(&service::check(&engine, &req)).1, Some(503));
}

fn service_peer(p: Option<&attribute_context::Peer>) -> (alp_engine::Peer<'_>, bool) {
    service::peer(p)
}

/// Tier `default` (default Deny): GET on prefix `/public` from service account `customer`.
const PATH_POLICY: &str = r#"
{"activePolicyUpdate":{"id":{"name":"public","namespace":"","kind":"GlobalNetworkPolicy"},"policy":{"tier":"default","inboundRules":[{"action":"allow","srcServiceAccountMatch":{"names":["customer"]},"httpMatch":{"methods":["GET"],"paths":[{"prefix":"/public"}]},"ruleId":"r0"}]}}}
{"workloadEndpointUpdate":{"id":{"orchestratorId":"k8s","workloadId":"default/database","endpointId":"eth0"},"endpoint":{"tiers":[{"name":"default","ingressPolicies":[{"name":"public","namespace":"","kind":"GlobalNetworkPolicy"}],"defaultAction":"Deny"}]}}}
{"inSync":{}}
"#;

fn path_engine(options: &Options) -> Engine {
    let messages = alp_felix::updates::parse_updates(PATH_POLICY).unwrap();
    let engine = alp_felix::engine_from_updates_with(&messages, options);
    assert!(engine.version().is_some(), "in sync");
    engine
}

/// D10: ext_authz cannot make Envoy forward the canonical path, so a non-canonical one is
/// refused (400), as the filter's `non_canonical_path: reject`; canonical paths are decided as
/// usual, and paths that do not normalise are the engine's `BadRequestPath`.
#[test]
fn non_canonical_paths_are_refused() {
    let engine = path_engine(&Options::default());
    let allowed = (0, None, String::new());
    let denied = (7, Some(403), "denied by policy".to_string());
    let bad_path = (3, Some(400), "invalid request path".to_string());
    let cases: &[(&str, &Outcome)] = &[
        ("/public", &allowed),
        ("/public/", &allowed),
        ("/public/x?a=/../b", &allowed),
        ("/public%2Fx", &denied),
        ("/admin", &denied),
        ("/public%2F..", &bad_path),
        // Non-canonical, whichever way the canonical path would be decided.
        ("/admin/../public", &bad_path),
        ("/public/../admin", &bad_path),
        ("/public//x", &bad_path),
        ("/public/./x", &bad_path),
        ("/public/;x/y", &bad_path),
        ("/public\\x", &bad_path),
        // Ambiguous or not normalisable: the engine's BadRequestPath.
        ("/admin/..%3B/public", &bad_path),
        ("/public%252fadmin", &bad_path),
        ("public", &bad_path),
    ];
    for (path, want) in cases {
        let got = outcome(&service::check(
            &engine,
            &request(CUSTOMER, Some("GET"), path),
        ));
        assert_eq!(&got, *want, "{path}");
    }
    // A connection-level check has no path to refuse.
    assert_eq!(
        outcome(&service::check(
            &engine,
            &request(CUSTOMER, None, "/a/../b")
        )),
        denied
    );
}

/// D12 over the wire: `--trust-domain` pins principals; a non-canonical path is refused there
/// too.
#[tokio::test]
async fn trust_domains_and_non_canonical_paths_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        trust_domains: alp_engine::TrustDomains::new(["cluster.local"]),
        ..Options::default()
    };
    let (running, mut client) = start_with_options(dir.path(), PATH_POLICY, options).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while check_once(&mut client, request(CUSTOMER, Some("GET"), "/public")).await
        != (0, None, String::new())
    {
        assert!(std::time::Instant::now() < deadline, "no policy after 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        check_once(
            &mut client,
            request(
                "spiffe://evil.example/ns/default/sa/customer",
                Some("GET"),
                "/public"
            )
        )
        .await,
        (7, Some(403), "invalid peer identity".into())
    );
    assert_eq!(
        check_once(
            &mut client,
            request(CUSTOMER, Some("GET"), "/admin/../public")
        )
        .await,
        (3, Some(400), "invalid request path".into())
    );
    let _ = running.shutdown.send(true);
    running.finished().await.unwrap();

    // Without the setting every trust domain is accepted, as upstream.
    let any = path_engine(&Options::default());
    let r = request(
        "spiffe://evil.example/ns/default/sa/customer",
        Some("GET"),
        "/public",
    );
    assert_eq!(outcome(&service::check(&any, &r)), (0, None, String::new()));
}
