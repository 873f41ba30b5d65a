//! What the tests that start `control serve` themselves share (`mod common;` in each; not every
//! test uses every item).
#![allow(dead_code)]

use std::process::Child;
use std::time::Duration;

/// A synchronised store with one workload endpoint and no policy, as an updates file.
pub const UPDATES: &str = concat!(
    r#"{"workloadEndpointUpdate":{"id":{"workloadId":"default/pod"},"endpoint":{"profileIds":["kns.default"]}}}"#,
    "\n",
    r#"{"inSync":{}}"#,
    "\n"
);

/// How long any one step may take on a loaded machine before a test gives up.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Kills the server it holds when dropped (a failing assertion must not leave it running).
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind :0");
    l.local_addr().expect("addr").port()
}
