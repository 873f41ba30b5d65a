//! Current and pending stores across `in_sync` and reconnects (semantics.md section 2.3, D8).
//!
//! A stream fills a fresh *pending* store until its `in_sync`, which makes pending the
//! *current* (enforced) store; later messages of that stream apply to current directly. A new
//! stream starts a new pending store and leaves current enforced, unchanged, until its own
//! `in_sync`. So a reconnect never exposes a half-synchronised store, and entries Felix stopped
//! sending while we were disconnected do not survive the next `in_sync` (upstream Dikastes keeps
//! them).

use crate::store::{Applied, Malformed, Store};
use crate::wire::felix::{to_dataplane::Payload, ToDataplane};
use alp_engine::{Engine, Options, Snapshot};

/// The stores control keeps for one workload.
#[derive(Debug, Default)]
pub struct SyncState {
    current: Option<Store>,
    pending: Store,
    /// Whether the stream in progress has delivered `in_sync`.
    stream_in_sync: bool,
    generation: u64,
}

/// What [`SyncState::apply`] did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncApplied {
    /// The store's verdict on the message; for `in_sync`, `Changed` when it promoted a pending
    /// store that differs from current, `Unchanged` when it was a repeat or promoted a store
    /// equal to current.
    pub applied: Applied,
    /// Whether the current (enforced) store changed, i.e. [`SyncState::generation`] moved.
    pub current_changed: bool,
}

impl SyncState {
    /// No current store; messages go to pending until the first `in_sync`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new stream: discards pending (a stream that never reached `in_sync` leaves
    /// nothing behind) and starts an empty one. Current stays enforced unchanged.
    pub fn begin_stream(&mut self) {
        self.pending = Store::new();
        self.stream_in_sync = false;
    }

    /// Applies one message of the stream in progress.
    pub fn apply(&mut self, msg: &ToDataplane) -> SyncApplied {
        if let Some(Payload::InSync(_)) = msg.payload {
            return self.in_sync_received();
        }
        match (&mut self.current, self.stream_in_sync) {
            (Some(current), true) => {
                let applied = current.apply(msg);
                let current_changed = applied == Applied::Changed;
                if current_changed {
                    self.generation += 1;
                }
                SyncApplied {
                    applied,
                    current_changed,
                }
            }
            _ => SyncApplied {
                applied: self.pending.apply(msg),
                current_changed: false,
            },
        }
    }

    fn in_sync_received(&mut self) -> SyncApplied {
        if self.stream_in_sync {
            return SyncApplied {
                applied: Applied::Unchanged,
                current_changed: false,
            };
        }
        let pending = std::mem::take(&mut self.pending);
        let current_changed = self.promote(pending);
        SyncApplied {
            applied: Applied::changed_if(current_changed),
            current_changed,
        }
    }

    /// The stream in progress is in sync: `store` becomes current. A store equal to current (a
    /// reconnect, an updates file rewritten with the same content) keeps the generation.
    fn promote(&mut self, store: Store) -> bool {
        self.stream_in_sync = true;
        if self.current.as_ref() == Some(&store) {
            return false;
        }
        self.current = Some(store);
        self.generation += 1;
        true
    }

    /// Replays `messages` as one new stream, all at once: a document of updates, or what
    /// Calico YAML compiles to. As [`SyncState::begin_stream`] and then [`SyncState::apply`]
    /// for each message, except that the generation moves at most once: when the stream
    /// reaches `in_sync` and the store it leaves differs from current. Whether it reached
    /// `in_sync` is [`SyncState::in_sync`] afterwards.
    pub fn replay(&mut self, messages: &[ToDataplane]) -> Replayed {
        self.begin_stream();
        // Messages before and after `in_sync` build the same store: pending, then promoted.
        let mut store = Store::new();
        let mut reached_in_sync = false;
        let mut malformed = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            if let Some(Payload::InSync(_)) = message.payload {
                reached_in_sync = true;
            } else if let Applied::Malformed(why) = store.apply(message) {
                malformed.push((index, why));
            }
        }
        let current_changed = if reached_in_sync {
            self.promote(store)
        } else {
            self.pending = store;
            false
        };
        Replayed {
            current_changed,
            malformed,
        }
    }

    /// The enforced store; `None` until the first `in_sync` (every request: `NotInSync`).
    pub fn current(&self) -> Option<&Store> {
        self.current.as_ref()
    }

    /// The store the stream in progress is filling before its `in_sync`.
    pub fn pending(&self) -> &Store {
        &self.pending
    }

    /// Whether the stream in progress has delivered `in_sync` (its messages now apply to
    /// current). After a reconnect this is false while the previous current stays enforced.
    pub fn in_sync(&self) -> bool {
        self.stream_in_sync
    }

    /// Starts at 0 and increments whenever the current store changes (promotion at `in_sync`
    /// of a store that differs from current, or a later message that changed it). Equal
    /// generations mean equal current stores: what tells a consumer that a snapshot it holds
    /// is still the current one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The current store's snapshot with its generation as version; `None` before the first
    /// `in_sync`.
    pub fn snapshot(&self) -> Option<(u64, Snapshot)> {
        self.current
            .as_ref()
            .map(|store| (self.generation, store.snapshot()))
    }

    /// An engine for the current store (every request `NotInSync` before the first `in_sync`).
    pub fn engine(&self) -> Engine {
        self.engine_with(&Options::default())
    }

    /// [`SyncState::engine`] built with `options` (the staged rehearsal, trust domains); the
    /// generation is the engine's version.
    pub fn engine_with(&self, options: &Options) -> Engine {
        match self.snapshot() {
            Some((version, snapshot)) => Engine::from_snapshot_with(version, &snapshot, options),
            None => Engine::not_in_sync(),
        }
    }
}

/// What [`SyncState::replay`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Whether the current store changed (the generation moved).
    pub current_changed: bool,
    /// The messages the store refused (logged by the store and skipped): their index in the
    /// replayed list (0-based) and why.
    pub malformed: Vec<(usize, Malformed)>,
}

/// Replays `messages` as one stream to a fresh [`SyncState`] and returns its engine (`control
/// check`, the conformance cases). Malformed messages are logged and skipped.
pub fn engine_from_updates(messages: &[ToDataplane]) -> Engine {
    engine_from_updates_with(messages, &Options::default())
}

/// [`engine_from_updates`] built with `options`.
pub fn engine_from_updates_with(messages: &[ToDataplane], options: &Options) -> Engine {
    let mut state = SyncState::new();
    state.replay(messages);
    state.engine_with(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::msg;

    const NS_A: &str = r#"{"namespaceUpdate": {"id": {"name": "a"}}}"#;
    const NS_B: &str = r#"{"namespaceUpdate": {"id": {"name": "b"}}}"#;
    const NS_C: &str = r#"{"namespaceUpdate": {"id": {"name": "c"}}}"#;
    const NS_A_REMOVE: &str = r#"{"namespaceRemove": {"id": {"name": "a"}}}"#;
    const IN_SYNC: &str = r#"{"inSync": {}}"#;

    fn apply(state: &mut SyncState, text: &str) -> SyncApplied {
        state.apply(&msg(text))
    }

    fn names(store: Option<&Store>) -> Option<Vec<&str>> {
        store.map(|s| s.namespaces().keys().map(String::as_str).collect())
    }

    #[test]
    fn messages_stay_pending_until_in_sync() {
        let mut st = SyncState::new();
        assert!(!apply(&mut st, NS_A).current_changed);
        assert_eq!(names(st.current()), None);
        assert!(!st.in_sync());
        assert_eq!(st.generation(), 0);
        assert_eq!(names(Some(st.pending())), Some(vec!["a"]));

        let r = apply(&mut st, IN_SYNC);
        assert_eq!(
            r,
            SyncApplied {
                applied: Applied::Changed,
                current_changed: true
            }
        );
        assert!(st.in_sync());
        assert_eq!(names(st.current()), Some(vec!["a"]));
        assert_eq!(st.generation(), 1);
        assert!(st.pending().namespaces().is_empty());
    }

    #[test]
    fn after_in_sync_messages_apply_to_current() {
        let mut st = SyncState::new();
        apply(&mut st, IN_SYNC);
        assert_eq!(names(st.current()), Some(vec![]));

        assert!(apply(&mut st, NS_A).current_changed);
        assert_eq!(names(st.current()), Some(vec!["a"]));
        assert_eq!(st.generation(), 2);
        // No change, no new generation.
        let r = apply(&mut st, NS_A);
        assert_eq!(
            r,
            SyncApplied {
                applied: Applied::Unchanged,
                current_changed: false
            }
        );
        assert!(!apply(&mut st, r#"{"configUpdate": {}}"#).current_changed);
        assert_eq!(st.generation(), 2);
        // A repeated in_sync on the same stream is a no-op.
        let r = apply(&mut st, IN_SYNC);
        assert_eq!(
            r,
            SyncApplied {
                applied: Applied::Unchanged,
                current_changed: false
            }
        );
        assert_eq!(names(st.current()), Some(vec!["a"]));
        assert_eq!(st.generation(), 2);
        apply(&mut st, NS_A_REMOVE);
        assert_eq!(names(st.current()), Some(vec![]));
        assert_eq!(st.generation(), 3);
    }

    /// D8: a reconnect keeps the last in-sync store enforced until the new stream's in_sync,
    /// which replaces it entirely (stale entries do not survive).
    #[test]
    fn reconnect_keeps_current_until_new_in_sync() {
        let mut st = SyncState::new();
        for text in [NS_A, NS_B, IN_SYNC] {
            apply(&mut st, text);
        }
        assert_eq!(st.generation(), 1);

        st.begin_stream();
        assert!(!st.in_sync());
        for text in [NS_C, NS_A_REMOVE] {
            assert!(!apply(&mut st, text).current_changed, "{text}");
            assert_eq!(names(st.current()), Some(vec!["a", "b"]), "{text}");
        }
        assert_eq!(st.generation(), 1);
        apply(&mut st, IN_SYNC);
        assert_eq!(names(st.current()), Some(vec!["c"]));
        assert_eq!(st.generation(), 2);
    }

    #[test]
    fn stream_without_in_sync_is_discarded() {
        let mut st = SyncState::new();
        apply(&mut st, NS_A);
        st.begin_stream();
        apply(&mut st, NS_B);
        apply(&mut st, IN_SYNC);
        assert_eq!(names(st.current()), Some(vec!["b"]));

        // A failed stream after sync: its pending data never shows, even after another reconnect.
        st.begin_stream();
        apply(&mut st, NS_C);
        st.begin_stream();
        assert_eq!(names(st.current()), Some(vec!["b"]));
        apply(&mut st, IN_SYNC);
        assert_eq!(names(st.current()), Some(vec![]));
    }

    #[test]
    fn first_stream_may_start_without_begin_stream() {
        let mut a = SyncState::new();
        let mut b = SyncState::new();
        b.begin_stream();
        for text in [NS_A, IN_SYNC, NS_B] {
            assert_eq!(apply(&mut a, text), apply(&mut b, text), "{text}");
        }
        assert_eq!(names(a.current()), names(b.current()));
        assert_eq!(a.generation(), b.generation());
    }

    /// A new stream that rebuilds the current store exactly does not move the generation.
    #[test]
    fn an_equal_store_keeps_its_generation() {
        let mut st = SyncState::new();
        for text in [NS_A, IN_SYNC] {
            apply(&mut st, text);
        }
        assert_eq!(st.generation(), 1);
        st.begin_stream();
        apply(&mut st, NS_A);
        let r = apply(&mut st, IN_SYNC);
        assert_eq!((r.applied, r.current_changed), (Applied::Unchanged, false));
        assert!(st.in_sync(), "the new stream is in sync all the same");
        assert_eq!(st.generation(), 1);
        assert_eq!(names(st.current()), Some(vec!["a"]));
        // Live messages of that stream apply to current as usual.
        assert!(apply(&mut st, NS_B).current_changed);
        assert_eq!(st.generation(), 2);
    }

    #[test]
    fn replay_is_one_stream() {
        let msgs: Vec<ToDataplane> = [NS_A, r#"{"namespaceUpdate": {}}"#, IN_SYNC, NS_B]
            .iter()
            .map(|t| msg(t))
            .collect();
        let mut st = SyncState::new();
        let r = st.replay(&msgs);
        assert!(r.current_changed && st.in_sync());
        assert_eq!(r.malformed.len(), 1);
        assert_eq!(r.malformed[0].0, 1);
        assert_eq!(names(st.current()), Some(vec!["a", "b"]));
        assert_eq!(st.generation(), 1, "one replay, one generation");
        // The same again: a new stream, an equal store (although it differs at its inSync).
        let r = st.replay(&msgs);
        assert!(!r.current_changed && st.in_sync());
        assert_eq!(st.generation(), 1);
        // No inSync: nothing changes, and the state is not in sync.
        let r = st.replay(&msgs[..2]);
        assert!(!r.current_changed && !st.in_sync());
        assert_eq!(names(st.current()), Some(vec!["a", "b"]));
        assert_eq!(engine_from_updates(&msgs).version(), Some(1));
        assert_eq!(engine_from_updates(&msgs[..2]).version(), None);
    }
}
