use super::*;
use alp_engine::snapshot::{Endpoint, Snapshot, Tier};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::sync::Mutex;

fn snapshot(tag: &str) -> Snapshot {
    Snapshot {
        endpoint: Some(Endpoint {
            tiers: vec![Tier {
                name: tag.into(),
                ..Default::default()
            }],
            profile_ids: vec![],
        }),
        ..Default::default()
    }
}

fn envelope(version: u64) -> Vec<u8> {
    envelope::encode(version, &snapshot("t")).unwrap()
}

fn settings(address: Address) -> FollowSettings {
    FollowSettings {
        address,
        poll_timeout: Duration::from_millis(200),
        retry_interval: Duration::from_millis(20),
        options: Options::default(),
    }
}

/// Collects log lines.
#[derive(Default)]
struct Lines(Mutex<Vec<(Level, String)>>);

impl Lines {
    fn logger(self: &Arc<Self>) -> Logger {
        let lines = Arc::clone(self);
        Arc::new(move |level, text: &str| {
            lines.0.lock().unwrap().push((level, text.to_string()));
        })
    }

    fn text(&self) -> String {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn answer(version: u64) -> Result<Answer, PollError> {
    Ok(Answer::Snapshot {
        body: envelope(version),
        version: Some(version),
    })
}

#[test]
fn not_in_sync_until_the_first_snapshot_then_swapped_in() {
    let f = Follower::new(settings(Address::Tcp("127.0.0.1:1".into())));
    let lines = Arc::new(Lines::default());
    let log = lines.logger();
    let mut state = PollState::default();
    assert_eq!(f.current().version(), None);
    assert_eq!(state.have(&f), 0);
    let held = f.current();
    assert_eq!(f.take(&mut state, answer(3), &*log), Duration::ZERO);
    assert_eq!(f.current().version(), Some(3));
    // A request that took the old program keeps it until it is done.
    assert_eq!(held.version(), None);
    assert_eq!(state.have(&f), 3);
    assert_eq!(f.stats.reloads.load(Ordering::Relaxed), 1);
    assert!(f.stats.received_ms.load(Ordering::Relaxed) > 0);
    assert!(
        lines.text().contains("policy version 3 installed"),
        "{}",
        lines.text()
    );
}

#[test]
fn a_corrupt_snapshot_is_refused_and_asked_for_as_held() {
    let f = Follower::new(settings(Address::Tcp("127.0.0.1:1".into())));
    let lines = Arc::new(Lines::default());
    let log = lines.logger();
    let mut state = PollState::default();
    f.take(&mut state, answer(3), &*log);
    let mut corrupt = envelope(4);
    corrupt.truncate(corrupt.len() - 1);
    corrupt.push(0xff);
    let pause = f.take(
        &mut state,
        Ok(Answer::Snapshot {
            body: corrupt,
            version: Some(4),
        }),
        &*log,
    );
    assert_eq!(
        pause,
        Duration::from_millis(20),
        "retried after the interval"
    );
    assert_eq!(
        f.current().version(),
        Some(3),
        "the last good program stays"
    );
    assert_eq!(
        state.have(&f),
        4,
        "control long-polls instead of resending it"
    );
    assert_eq!(f.stats.refusals.load(Ordering::Relaxed), 1);
    assert!(
        lines
            .text()
            .contains("refused policy version 4 from control")
            && lines.text().contains("keeping version 3"),
        "{}",
        lines.text()
    );
    // Garbage without a version: refused, nothing remembered.
    f.take(
        &mut state,
        Ok(Answer::Snapshot {
            body: b"junk".to_vec(),
            version: None,
        }),
        &*log,
    );
    assert_eq!(state.have(&f), 3);
}

#[test]
fn control_going_away_keeps_the_program_and_logs_once_per_interval() {
    let f = Follower::new(settings(Address::Tcp("127.0.0.1:1".into())));
    let lines = Arc::new(Lines::default());
    let log = lines.logger();
    let mut state = PollState::default();
    f.take(&mut state, answer(8), &*log);
    for _ in 0..5 {
        let err = PollError::Malformed("no end of headers");
        assert_eq!(
            f.take(&mut state, Err(err), &*log),
            Duration::from_millis(20)
        );
        assert_eq!(
            f.take(&mut state, Ok(Answer::Status(500)), &*log),
            Duration::from_millis(20)
        );
    }
    assert_eq!(f.current().version(), Some(8));
    let text = lines.text();
    assert_eq!(text.matches("failed").count(), 1, "{text}");
    assert!(text.contains("keeping version 8"), "{text}");
    f.take(&mut state, Ok(Answer::Unchanged), &*log);
    assert!(lines
        .text()
        .contains("control reachable again after 10 failed polls"));
}

/// A control that answers each poll with the next of `answers` (raw HTTP responses) and records
/// the requests.
fn fake_control(answers: Vec<Vec<u8>>) -> (tempfile::TempDir, Arc<Mutex<Vec<String>>>) {
    let dir = tempfile::tempdir().unwrap();
    let listener = UnixListener::bind(dir.path().join("c.sock")).unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    std::thread::spawn(move || {
        for answer in answers {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            seen.lock().unwrap().push(head);
            let mut stream = reader.into_inner();
            let _ = stream.write_all(&answer);
        }
    });
    (dir, requests)
}

fn ok_response(version: u64) -> Vec<u8> {
    let body = envelope(version);
    let mut r = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\nx-alp-version: {version}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(&body);
    r
}

#[test]
fn the_thread_follows_control_over_its_socket_and_ends_with_its_follower() {
    let (dir, requests) = fake_control(vec![
        ok_response(5),
        b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        ok_response(6),
    ]);
    let f = Follower::new(settings(Address::Unix(dir.path().join("c.sock"))));
    let lines = Arc::new(Lines::default());
    f.spawn(lines.logger()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while f.current().version() != Some(6) {
        assert!(std::time::Instant::now() < deadline, "{}", lines.text());
        std::thread::sleep(Duration::from_millis(5));
    }
    let requests = requests.lock().unwrap().clone();
    assert!(
        requests[0].contains("x-alp-have-version: 0"),
        "{requests:?}"
    );
    assert!(
        requests[1].contains("x-alp-have-version: 5"),
        "{requests:?}"
    );
    assert!(
        requests[2].contains("x-alp-have-version: 5"),
        "{requests:?}"
    );
    assert!(requests[0].contains("x-alp-wait-ms: 200"), "{requests:?}");
    // Nothing holds the follower but this test: dropping it ends the thread (its next poll
    // fails to connect, and it finds the follower gone).
    let weak = Arc::downgrade(&f);
    drop(f);
    assert!(weak.upgrade().is_none());
}
