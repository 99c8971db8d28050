//! The keeper's `GET /primary` in a real cluster: it answers 200 only on the elected, promoted
//! master while it holds a recent clusterdata that it could parse; it turns 503 at once when
//! clusterdata becomes unusable (a newer format, corrupt) and when another db is elected.

use serde_json::json;
use std::time::Duration;
use stolon_tests::cluster::{create_table, insert_rows, ClusterOptions, TestCluster};
use stolon_tests::wait_until_desc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOOT: Duration = Duration::from_secs(90);
const FAILOVER: Duration = Duration::from_secs(60);

/// The status line of `GET path` on a keeper's metrics port (empty when it does not answer).
async fn status_line(metrics_port: u16, path: &str) -> String {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", metrics_port)).await else { return String::new() };
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = s.read_to_string(&mut response).await;
    response.lines().next().unwrap_or_default().to_string()
}

async fn primary(c: &TestCluster, i: usize) -> bool {
    status_line(c.keepers[i].metrics_port, "/primary").await.contains(" 200")
}

async fn wait_primary(c: &TestCluster, i: usize, want: bool, within: Duration, what: &str) {
    wait_until_desc(what, within, Duration::from_millis(100), || async { primary(c, i).await == want }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn primary_probe_ends_at_once_on_unusable_clusterdata_and_follows_the_master() {
    let opts = ClusterOptions { keepers: 2, sentinels: 1, proxies: 0, spec: json!({"initMode": "new"}) };
    let mut c = TestCluster::start("probe", opts).await;
    let m = c.wait_master(BOOT, None).await;
    c.wait_streaming(m, 1, BOOT).await;
    let s = (m + 1) % 2;
    wait_primary(&c, m, true, BOOT, "/primary 200 on the master").await;
    assert!(!primary(&c, s).await, "/primary on the standby");

    // A clusterdata the keepers cannot parse: the master stops vouching for itself at once
    // (it used to keep answering 200 from its last good copy), and keeps serving as it is.
    let out = c.ctl(&["clusterdata", "read"]);
    let good = String::from_utf8(out.stdout).unwrap();
    let key = format!("stolon/cluster/{}/clusterdata", c.name);
    let mut etcd = c.etcd.client().await.unwrap();
    etcd.put(key.as_str(), r#"{"formatVersion": 99}"#, None).await.unwrap();
    wait_primary(&c, m, false, Duration::from_secs(2), "/primary 503 on unusable clusterdata").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!primary(&c, m).await, "/primary came back while clusterdata is unusable");
    let master = c.keeper_client(m).await.unwrap();
    create_table(&master).await.unwrap();
    insert_rows(&master, 0, 10).await.unwrap();

    // Restored: 200 again, on the same master.
    etcd.put(key.as_str(), good.trim(), None).await.unwrap();
    wait_primary(&c, m, true, Duration::from_secs(5), "/primary 200 once clusterdata is readable").await;

    // A failover: the new master answers 200 and the old one's keeper is gone.
    c.kill_keeper(m);
    assert_eq!(c.wait_master(FAILOVER, Some(m)).await, s);
    wait_primary(&c, s, true, FAILOVER, "/primary 200 on the new master").await;
}
