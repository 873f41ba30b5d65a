//! `Authorization/Check`: the request attributes Envoy sends -> the engine -> the answer.

use super::proto::envoy::config::core::v3::{
    address, socket_address, HeaderValue, HeaderValueOption,
};
use super::proto::envoy::r#type::v3::HttpStatus;
use super::proto::envoy::service::auth::v3::attribute_context;
use super::proto::envoy::service::auth::v3::authorization_server::Authorization;
use super::proto::envoy::service::auth::v3::{
    check_response, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use super::proto::google::rpc;
use crate::decide;
use alp_engine::address::parse_ip;
use alp_engine::path::NonCanonicalPath;
use alp_engine::protocol::{TCP, UDP};
use alp_engine::{Engine, Http, Peer, Request, Verdict};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{debug, enabled, Level};

/// `google.rpc.Code` values.
const OK: i32 = 0;
const INVALID_ARGUMENT: i32 = 3;
const PERMISSION_DENIED: i32 = 7;
const UNAVAILABLE: i32 = 14;

/// The gRPC service: answers each check with the engine in force.
#[derive(Clone)]
pub struct Authorizer {
    engine: watch::Receiver<Arc<Engine>>,
}

impl Authorizer {
    pub fn new(engine: watch::Receiver<Arc<Engine>>) -> Self {
        Authorizer { engine }
    }
}

#[tonic::async_trait]
impl Authorization for Authorizer {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let engine = Arc::clone(&self.engine.borrow());
        Ok(tonic::Response::new(check(&engine, &request.into_inner())))
    }
}

/// Decides one check.
pub fn check(engine: &Engine, check: &CheckRequest) -> CheckResponse {
    let attributes = check.attributes.as_ref();
    let source = attributes.and_then(|a| a.source.as_ref());
    let destination = attributes.and_then(|a| a.destination.as_ref());
    let http = attributes
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let (src, src_udp) = peer(source);
    let (dst, dst_udp) = peer(destination);
    let request = Request {
        source: src,
        destination: dst,
        protocol: if src_udp || dst_udp { UDP } else { TCP },
        http: http.map(|h| Http {
            method: &h.method,
            path: &h.path,
            host: &h.host,
        }),
    };
    // Envoy forwards the path as it is: a non-canonical one is refused (D10).
    let decided = decide::decide(engine, &request, NonCanonicalPath::Reject);
    let decision = decided.decision;
    if enabled!(Level::DEBUG) {
        let e = engine.explain(&decision);
        debug!(
            decision = e.decision,
            reason = e.reason,
            status = e.status,
            policy = e.policy.as_ref().map(|p| p.name.as_str()),
            rule = e.rule,
            non_canonical_path = decided.rejected_path(),
            canonical_path = decided.non_canonical.as_ref().map(|n| n.forwarded.as_str()),
            src = ?src.address,
            src_principal = src.principal,
            "check"
        );
    }
    response(decision.verdict)
}

/// The engine's view of one peer: principal, IP and port from `address.socket_address`
/// (anything else, such as a pipe, is no address); whether the socket is UDP.
pub(super) fn peer(peer: Option<&attribute_context::Peer>) -> (Peer<'_>, bool) {
    let Some(p) = peer else {
        return (Peer::default(), false);
    };
    let socket = match p.address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => Some(s),
        _ => None,
    };
    let ip = socket.and_then(|s| parse_ip(&s.address));
    let port = match (ip, socket.and_then(|s| s.port_specifier.as_ref())) {
        (Some(_), Some(socket_address::PortSpecifier::PortValue(v))) => {
            u16::try_from(*v).unwrap_or(0)
        }
        _ => 0,
    };
    let udp = socket.is_some_and(|s| s.protocol == socket_address::Protocol::Udp as i32);
    (
        Peer {
            principal: &p.principal,
            address: ip,
            port,
        },
        udp,
    )
}

/// OK, or the D9 status and body (the filter's local reply).
pub fn response(verdict: Verdict) -> CheckResponse {
    let Some(status) = verdict.status() else {
        return CheckResponse {
            status: Some(rpc::Status {
                code: OK,
                message: String::new(),
            }),
            http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse {})),
        };
    };
    let code = match status {
        503 => UNAVAILABLE,
        400 => INVALID_ARGUMENT,
        _ => PERMISSION_DENIED,
    };
    CheckResponse {
        status: Some(rpc::Status {
            code,
            message: verdict.reason().to_string(),
        }),
        http_response: Some(check_response::HttpResponse::DeniedResponse(
            DeniedHttpResponse {
                status: Some(HttpStatus {
                    code: i32::from(status),
                }),
                headers: vec![HeaderValueOption {
                    header: Some(HeaderValue {
                        key: "content-type".into(),
                        value: "text/plain".into(),
                    }),
                }],
                body: verdict.body().to_string(),
            },
        )),
    }
}
