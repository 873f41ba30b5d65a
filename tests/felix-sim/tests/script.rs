//! The `test-felix` binary plays a script to a real tonic client (the generated
//! `PolicySyncClient`) over its Unix socket; the script parser names bad lines.

use felix_sim::felix::policy_sync_client::PolicySyncClient;
use felix_sim::felix::{to_dataplane::Payload, SyncRequest, ToDataplane};
use felix_sim::{Script, Step};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::UnixStream;
use tonic::transport::{Endpoint, Uri};

const WAIT: Duration = Duration::from_secs(30);

struct Felix(Child);

impl Drop for Felix {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, script: &str) -> (Felix, PathBuf) {
    let file = dir.join("script.txt");
    std::fs::write(&file, script).unwrap();
    let socket = dir.join("felix.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_test-felix"))
        .arg("--socket")
        .arg(&socket)
        .arg(&file)
        .stdin(Stdio::null())
        .spawn()
        .expect("test-felix starts");
    let deadline = Instant::now() + WAIT;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "test-felix never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    (Felix(child), socket)
}

/// One `Sync` call: every message until the stream ends, and how it ended.
async fn sync(socket: &Path) -> (Vec<ToDataplane>, Result<(), tonic::Status>, Duration) {
    let path = socket.to_path_buf();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .expect("connect");
    let started = Instant::now();
    let mut stream = PolicySyncClient::new(channel)
        .sync(SyncRequest {})
        .await
        .expect("sync")
        .into_inner();
    let mut msgs = vec![];
    loop {
        match tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("stream stalled")
        {
            Ok(Some(m)) => msgs.push(m),
            Ok(None) => return (msgs, Ok(()), started.elapsed()),
            Err(status) => return (msgs, Err(status), started.elapsed()),
        }
    }
}

fn kinds(msgs: &[ToDataplane]) -> Vec<String> {
    msgs.iter()
        .map(|m| match &m.payload {
            Some(Payload::InSync(_)) => "inSync".to_string(),
            Some(Payload::NamespaceUpdate(u)) => {
                format!("ns {}", u.id.as_ref().map_or("", |i| i.name.as_str()))
            }
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_plays_a_script_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
# first connection: two messages, a pause, inSync, then Felix ends the stream
{"namespaceUpdate": {"id": {"name": "a"}}}
{"namespace_update": {"id": {"name": "b"}}}
pause 300
{"inSync": {}}
end
# second connection fails after one message
{"namespaceUpdate": {"id": {"name": "c"}}}
fail felix restarting
# third and later connections: this, then exit
{"inSync": {}}
pause 200
exit
"#;
    let (_felix, socket) = start(dir.path(), script);

    let (msgs, end, took) = sync(&socket).await;
    assert_eq!(kinds(&msgs), ["ns a", "ns b", "inSync"]);
    assert!(end.is_ok(), "{end:?}");
    assert!(took >= Duration::from_millis(300), "the pause: {took:?}");

    let (msgs, end, _) = sync(&socket).await;
    assert_eq!(kinds(&msgs), ["ns c"]);
    let status = end.expect_err("failed stream");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "felix restarting");

    // The last section: inSync, then the server goes away (connection broken, socket removed).
    let (msgs, end, _) = sync(&socket).await;
    assert_eq!(kinds(&msgs), ["inSync"]);
    assert!(end.is_err(), "a crash is not a clean end: {end:?}");
    let deadline = Instant::now() + WAIT;
    while socket.exists() {
        assert!(Instant::now() < deadline, "socket not removed on exit");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_section_is_replayed_for_later_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (_felix, socket) = start(dir.path(), "{\"inSync\": {}}\nend\n");
    for _ in 0..3 {
        let (msgs, end, _) = sync(&socket).await;
        assert_eq!(kinds(&msgs), ["inSync"]);
        assert!(end.is_ok());
    }
}

#[test]
fn scripts_parse_and_bad_lines_are_named() {
    let s = Script::parse("# c\n\n{\"inSync\": {}}\npause 5\nend\n{\"inSync\": {}}\n").unwrap();
    assert_eq!(s.connections.len(), 2);
    assert_eq!(s.connections[0].len(), 3);
    assert_eq!(s.connections[0][1], Step::Pause(Duration::from_millis(5)));
    assert_eq!(s.connections[0][2], Step::End);
    assert_eq!(
        Script::parse("end\n").unwrap().connections,
        vec![vec![Step::End]]
    );
    for (text, want) in [
        ("{\"inSync\": {}}\npause x\n", "line 2"),
        ("\n{\"ipsetUpdate\": {\"members\": 3}}\n", "line 2"),
        ("jump\n", "unknown step"),
    ] {
        let err = format!("{:#}", Script::parse(text).unwrap_err());
        assert!(err.contains(want), "{text:?}: {err}");
    }
}
