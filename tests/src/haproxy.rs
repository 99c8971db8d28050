//! HAProxy in front of the keepers, configured the way a `/primary` health check is meant to be
//! used: TCP mode, one server per keeper (its postgres port), checked with `GET /primary` on the
//! keeper's metrics address, only 200 counts as up. Intervals are short so a change of master is
//! seen within about a second. `scripts/prerequisites.sh` installs Debian's haproxy.

use crate::process::ChildGuard;
use crate::testdir::TestDir;
use crate::{free_port, wait_until_desc};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A running haproxy; killed on drop.
pub struct Haproxy {
    /// Where clients connect (127.0.0.1).
    pub port: u16,
    pub guard: ChildGuard,
}

/// The haproxy binary: `STOLON_TEST_HAPROXY_BIN`, else `haproxy` on PATH, else Debian's
/// `/usr/sbin/haproxy` (root's PATH has /usr/sbin, a user's may not).
pub fn haproxy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("STOLON_TEST_HAPROXY_BIN") {
        return PathBuf::from(bin);
    }
    let sbin = PathBuf::from("/usr/sbin/haproxy");
    if sbin.is_file() { sbin } else { PathBuf::from("haproxy") }
}

/// The configuration for `servers` = (name, postgres port, keeper metrics port).
pub fn config(port: u16, servers: &[(String, u16, u16)]) -> String {
    let mut cfg = format!(
        "global\n  maxconn 200\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10m\n  timeout server 10m\n  timeout check 1s\n\
         listen postgres\n  bind 127.0.0.1:{port}\n  option httpchk GET /primary\n  http-check expect status 200\n\
         \x20 default-server inter 200ms fall 1 rise 1 on-marked-down shutdown-sessions\n"
    );
    for (name, pg_port, check_port) in servers {
        cfg.push_str(&format!("  server {name} 127.0.0.1:{pg_port} check port {check_port}\n"));
    }
    cfg
}

impl Haproxy {
    /// Starts haproxy in the foreground (`-db`) and waits until its port accepts connections.
    ///
    /// # Panics
    /// If haproxy cannot be started (with a hint to install it) or never listens.
    pub async fn start(dir: &TestDir, servers: &[(String, u16, u16)]) -> Haproxy {
        let port = free_port();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config(port, servers)).expect("write haproxy.cfg");
        let mut cmd = Command::new(haproxy_bin());
        cmd.arg("-db").arg("-f").arg(&path);
        let guard = ChildGuard::try_spawn("haproxy", &mut cmd, &dir.log_path("haproxy"))
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; install haproxy (scripts/prerequisites.sh does)", haproxy_bin().display()));
        let up = wait_until_desc("haproxy to listen", Duration::from_secs(20), Duration::from_millis(100), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await
        })
        .await;
        if let Err(e) = up {
            panic!("{e}\n{}", guard.log_tail(20));
        }
        Haproxy { port, guard }
    }
}
