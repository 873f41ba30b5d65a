//! One downstream connection through the network filter (`filter: network`): decided once, with
//! the connection's attributes and no HTTP (spec section 3; a rule with an HTTP clause never
//! matches, D4). A denial closes the connection without a response (spec section 7) before any
//! byte of it reaches the upstream or any upstream byte reaches the client.
//!
//! When it is decided ([`ConnectionGate`]):
//! * **Plaintext**: at once, in `on_new_connection`. A denial closes the connection and stops the
//!   filter chain there, so `tcp_proxy` never opens an upstream connection.
//! * **TLS**: the peer certificate exists only once the handshake is complete, and deciding
//!   earlier would read the client as a plaintext peer (which passes service-account clauses).
//!   So the connection is decided on the first event that proves the handshake complete: its
//!   first downstream data (TLS delivers none before), or upstream data once `connection.mtls`
//!   says the peer certificate is there. Upstream bytes that arrive before that are held
//!   (returning `Pause` leaves them in `tcp_proxy`'s buffer) and counted
//!   (`alp_connections_held_total`); they are never delivered undecided.
//!
//!   For a server-first protocol (MySQL, SMTP: the client waits for the server's greeting), the
//!   `tcp_proxy` must use `upstream_connect_mode: ON_DOWNSTREAM_TLS_HANDSHAKE`: it then connects
//!   upstream only after the handshake, so the greeting is the event that decides (allowed: it
//!   is delivered; denied: the connection is closed and the client never sees it). With the
//!   default `IMMEDIATE` mode a greeting can arrive before the handshake completes; it is held,
//!   and Envoy delivers held upstream bytes only with the upstream's next write, so such a
//!   connection stalls (it is never leaked to an undecided client).
//!
//! A connection is not decided again when the policy changes: new connections get the new
//! policy (as Envoy's RBAC network filter and Dikastes' ext_authz check do).

use crate::attributes::{engine_request, Connection};
use crate::host::{Host, HostError};
use crate::vm_state::VmState;
use alp_engine::{Engine, Verdict};
use std::sync::Arc;

/// What the stream context tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop here: the connection is undecided (hold) or closed.
    Pause,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// Nothing seen yet.
    #[default]
    New,
    /// A TLS connection waiting for its handshake to complete.
    AwaitingHandshake,
    Allowed,
    Closed,
}

/// The decision state of one connection.
#[derive(Debug, Default)]
pub struct ConnectionGate {
    state: State,
    /// Upstream bytes have been held (counted once).
    held: bool,
}

impl ConnectionGate {
    pub fn new() -> Self {
        ConnectionGate::default()
    }

    /// Whether the connection was let through (for tests and logs).
    pub fn is_allowed(&self) -> bool {
        self.state == State::Allowed
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// A new downstream connection: decide a plaintext one now, wait for a TLS one's handshake.
    pub fn on_new_connection(&mut self, vm: &VmState, host: &dyn Host) -> Flow {
        let engine = vm.current_engine(host);
        if engine.version().is_none() {
            // No policy yet: closed at once, TLS or not.
            return self.decide(vm, host, &engine, None);
        }
        match tls(host) {
            Ok(true) => {
                self.state = State::AwaitingHandshake;
                Flow::Continue
            }
            Ok(false) => self.decide(vm, host, &engine, None),
            Err(HostError) => self.decide(vm, host, &engine, Some(Verdict::AttributesUnavailable)),
        }
    }

    /// Downstream bytes (`len` of them; `end_of_stream`: the client closed its side).
    pub fn on_downstream_data(
        &mut self,
        vm: &VmState,
        host: &dyn Host,
        len: usize,
        end_of_stream: bool,
    ) -> Flow {
        match self.state {
            State::Allowed => Flow::Continue,
            State::Closed => Flow::Pause,
            // TLS delivers application data only after the handshake.
            State::New | State::AwaitingHandshake if len > 0 => self.decide_now(vm, host, None),
            State::New | State::AwaitingHandshake => match handshake_complete(host) {
                Ok(true) => self.decide_now(vm, host, None),
                Err(HostError) => self.decide_now(vm, host, Some(Verdict::AttributesUnavailable)),
                // The client left before its handshake completed: nothing to decide or forward.
                Ok(false) if end_of_stream => self.close(host),
                Ok(false) => Flow::Pause,
            },
        }
    }

    /// The host reports the connection established, for TLS with its handshake complete (the
    /// native module's `Connected` event, which comes before any data): decides a connection
    /// still waiting for its handshake.
    pub fn on_handshake_complete(&mut self, vm: &VmState, host: &dyn Host) -> Flow {
        match self.state {
            State::Allowed => Flow::Continue,
            State::Closed => Flow::Pause,
            State::New | State::AwaitingHandshake => self.decide_now(vm, host, None),
        }
    }

    /// Whether the connection waits for its TLS handshake before it can be decided.
    pub fn awaits_handshake(&self) -> bool {
        self.state == State::AwaitingHandshake
    }

    /// Upstream bytes: delivered once allowed, held while the connection is undecided.
    pub fn on_upstream_data(&mut self, vm: &VmState, host: &dyn Host) -> Flow {
        match self.state {
            State::Allowed => Flow::Continue,
            State::Closed => Flow::Pause,
            State::New | State::AwaitingHandshake => match handshake_complete(host) {
                Ok(true) => self.decide_now(vm, host, None),
                Err(HostError) => self.decide_now(vm, host, Some(Verdict::AttributesUnavailable)),
                Ok(false) => {
                    if !self.held {
                        self.held = true;
                        vm.metrics.count_upstream_held();
                    }
                    Flow::Pause
                }
            },
        }
    }

    /// Decides with the engine in force now (data events; the new connection passes the one it
    /// already followed).
    fn decide_now(&mut self, vm: &VmState, host: &dyn Host, precheck: Option<Verdict>) -> Flow {
        let engine = vm.current_engine(host);
        self.decide(vm, host, &engine, precheck)
    }

    /// Reads the connection's attributes, decides, counts and logs; closes on a denial.
    fn decide(
        &mut self,
        vm: &VmState,
        host: &dyn Host,
        engine: &Arc<Engine>,
        precheck: Option<Verdict>,
    ) -> Flow {
        // Before the first snapshot nothing needs reading (the engine says NotInSync).
        let (connection, precheck) = match (engine.version(), precheck) {
            (None, _) => (None, None),
            (Some(_), Some(verdict)) => (None, Some(verdict)),
            (Some(_), None) => match Connection::read(host) {
                Ok(c) => (Some(c), None),
                Err(HostError) => (None, Some(Verdict::AttributesUnavailable)),
            },
        };
        let request = engine_request(connection.as_ref(), None);
        let judged = vm.judge(host, engine, &request, precheck, connection.as_ref(), None);
        if judged.refuse {
            return self.close(host);
        }
        self.state = State::Allowed;
        Flow::Continue
    }

    fn close(&mut self, host: &dyn Host) -> Flow {
        self.state = State::Closed;
        host.close_downstream();
        Flow::Pause
    }
}

/// Whether the connection is TLS (`connection.tls_version` is set from the start of a TLS
/// connection, before its handshake).
fn tls(host: &dyn Host) -> Result<bool, HostError> {
    Ok(host
        .property(&["connection", "tls_version"])?
        .is_some_and(|v| !v.is_empty()))
}

/// Whether the TLS handshake is known to be complete: the peer presented its certificate.
fn handshake_complete(host: &dyn Host) -> Result<bool, HostError> {
    Ok(host
        .property(&["connection", "mtls"])?
        .is_some_and(|v| v.first() == Some(&1)))
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
