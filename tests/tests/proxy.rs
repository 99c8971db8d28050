//! stolon-proxy against real etcd and real PostgreSQL, with this test playing the sentinel:
//! it writes clusterdata (who is master, which proxies are enabled) and checks the proxy's
//! routing, its fencing on a master change, its watchdog when etcd is frozen, and its
//! robustness against garbage and hundreds of idle connections.

use chrono::Utc;
use clusterview::data::*;
use clusterview::info::ProxyInfo;
use clusterview::store::{Expect, InfoKind};
use clusterview::{ClusterData, ClusterSpec, Store};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use stolon_tests::postgres::{connect, query_i64};
use stolon_tests::{bin_path, free_port, wait_until_desc, ChildGuard, Etcd, StandalonePostgres, TestDir, PROXY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLUSTER: &str = "pc";


fn db(uid: &str, role: DbRole, port: u16) -> Db {
    Db {
        uid: uid.into(),
        generation: 1,
        change_time: Utc::now(),
        spec: DbSpec {
            keeper_uid: format!("k-{uid}"),
            role,
            init_mode: DbInitMode::None,
            follow_config: None,
            followers: vec![],
            synchronous_replication: false,
            synchronous_standbys: vec![],
        },
        status: DbStatus { healthy: true, listen_address: Some("127.0.0.1".into()), port: Some(port), ..Default::default() },
    }
}

/// Clusterdata with dbs `a` and `b` on the given ports, proxies forwarding to `master`.
fn cluster(ports: (u16, u16), master: Option<&str>, generation: u64, proxies: &[&str]) -> ClusterData {
    let spec = ClusterSpec::parse_valid(r#"{"initMode":"new","proxyCheckInterval":"500ms","proxyTimeout":"3s"}"#).unwrap();
    let mut cd = ClusterData::new_initializing(spec, Utc::now());
    cd.cluster.status = ClusterStatus { phase: ClusterPhase::Normal, master: master.map(str::to_string) };
    cd.dbs.insert("a".into(), db("a", DbRole::Master, ports.0));
    cd.dbs.insert("b".into(), db("b", DbRole::Master, ports.1));
    cd.proxy.generation = generation;
    cd.proxy.spec = ProxySpec {
        master_db_uid: master.map(str::to_string),
        enabled_proxies: proxies.iter().map(|p| p.to_string()).collect(),
    };
    cd
}

/// Writes clusterdata by CAS, as the sentinel would.
async fn publish(store: &Store, cd: &ClusterData) {
    let expect = match store.get_cluster_data_raw().await.unwrap() {
        Some(current) => Expect::Revision(current.revision),
        None => Expect::Absent,
    };
    store.put_cluster_data(cd, expect).await.unwrap();
}

/// Waits until proxy `uid` reports having applied `generation`.
async fn wait_applied(store: &Store, uid: &str, generation: u64) {
    wait_until_desc(&format!("proxy {uid} to apply generation {generation}"), Duration::from_secs(10), Duration::from_millis(50), || async {
        let infos: BTreeMap<String, ProxyInfo> = store.list_infos(InfoKind::Proxy).await.ok()?;
        infos.get(uid).and_then(|i| i.generation).filter(|g| *g >= generation)
    })
    .await
    .unwrap();
}

struct Proxy {
    guard: ChildGuard,
    port: u16,
    metrics_port: u16,
}

fn start_proxy(dir: &TestDir, endpoints: &str, uid: &str, extra: &[&str]) -> Proxy {
    let port = free_port();
    let metrics_port = free_port();
    let mut cmd = Command::new(bin_path(PROXY));
    cmd.args(["--cluster-name", CLUSTER, "--store-endpoints", endpoints, "--uid", uid, "--log-level", "debug"])
        .args(["--port", &port.to_string(), "--metrics-listen-address", &format!("127.0.0.1:{metrics_port}")])
        .args(extra);
    Proxy { guard: ChildGuard::spawn(uid, &mut cmd, &dir.log_path(uid)), port, metrics_port }
}

async fn server_port_via(port: u16) -> Result<i64, String> {
    let client = connect("127.0.0.1", port, "postgres", None, "postgres").await.map_err(|e| e.to_string())?;
    query_i64(&client, "SELECT inet_server_port()::bigint").await.map_err(|e| e.to_string())
}

/// The whole HTTP/1.0 response (status line, headers, body) to `GET path` on the proxy's
/// metrics port.
async fn http_get(metrics_port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", metrics_port)).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).await.unwrap();
    response
}

async fn metric(metrics_port: u16, name_and_labels: &str) -> f64 {
    let body = http_get(metrics_port, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name_and_labels).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name_and_labels} not in metrics:\n{body}"))
}

/// The status line of `GET /health`.
async fn health(metrics_port: u16) -> String {
    http_get(metrics_port, "/health").await.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_follows_the_master_and_closes_connections_on_change() {
    let dir = TestDir::new("pxfail");
    let etcd = Etcd::start_single(&dir).await;
    let pa = StandalonePostgres::start(&dir, free_port()).await;
    let pb = StandalonePostgres::start(&dir, free_port()).await;
    let st = stolon_tests::connect_store(&etcd.endpoints(), CLUSTER).await;
    let ports = (pa.port(), pb.port());
    publish(&st, &cluster(ports, Some("a"), 1, &["p1"])).await;

    let px = start_proxy(&dir, &etcd.endpoints(), "p1", &[]);
    wait_applied(&st, "p1", 1).await;
    let port = wait_until_desc("proxy to reach master a", Duration::from_secs(10), Duration::from_millis(100), || server_port_via(px.port))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", px.guard.log_tail(30)));
    assert_eq!(port, i64::from(pa.port()));

    // A connection opened before the change.
    let before = connect("127.0.0.1", px.port, "postgres", None, "postgres").await.unwrap();
    assert_eq!(query_i64(&before, "SELECT 1::bigint").await.unwrap(), 1);

    // Step 1 of a failover: no master. The old connection is closed, new ones refused.
    publish(&st, &cluster(ports, None, 2, &["p1"])).await;
    wait_applied(&st, "p1", 2).await;
    assert!(query_i64(&before, "SELECT 1::bigint").await.is_err(), "connection to the deposed master must be closed");
    assert!(server_port_via(px.port).await.is_err(), "no master: no connection");

    // Step 2: the new master.
    publish(&st, &cluster(ports, Some("b"), 3, &["p1"])).await;
    wait_applied(&st, "p1", 3).await;
    assert_eq!(server_port_via(px.port).await.unwrap(), i64::from(pb.port()));
    assert!(metric(px.metrics_port, "stolon_proxy_closed_by_master_change_total{port=\"rw\"}").await >= 1.0);

    // A direct switch a -> b without the "no master" step also closes old connections.
    let on_b = connect("127.0.0.1", px.port, "postgres", None, "postgres").await.unwrap();
    publish(&st, &cluster(ports, Some("a"), 4, &["p1"])).await;
    wait_applied(&st, "p1", 4).await;
    assert!(query_i64(&on_b, "SELECT 1::bigint").await.is_err());
    assert_eq!(server_port_via(px.port).await.unwrap(), i64::from(pa.port()));

    // Metrics: the current master, bytes both ways, and a backend that refuses connections.
    let master_label = format!("stolon_proxy_master{{address=\"127.0.0.1:{}\"}}", pa.port());
    assert_eq!(metric(px.metrics_port, &master_label).await, 1.0);
    assert!(metric(px.metrics_port, "stolon_proxy_client_bytes_total{port=\"rw\"}").await > 0.0);
    assert!(metric(px.metrics_port, "stolon_proxy_backend_bytes_total{port=\"rw\"}").await > 0.0);
    let errors_before = metric(px.metrics_port, "stolon_proxy_backend_connect_errors_total{port=\"rw\"}").await;
    let dead_port = free_port();
    publish(&st, &cluster((dead_port, pb.port()), Some("a"), 5, &["p1"])).await;
    wait_applied(&st, "p1", 5).await;
    assert!(server_port_via(px.port).await.is_err());
    assert_eq!(metric(px.metrics_port, "stolon_proxy_backend_connect_errors_total{port=\"rw\"}").await, errors_before + 1.0);

    // A proxy not in enabledProxies forwards nothing.
    let p2 = start_proxy(&dir, &etcd.endpoints(), "p2", &[]);
    wait_applied(&st, "p2", 5).await;
    assert!(server_port_via(p2.port).await.is_err(), "p2 is not enabled");
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_fences_itself_when_etcd_is_gone_and_survives_short_blips() {
    let dir = TestDir::new("pxwd");
    let etcd = Etcd::start_single(&dir).await;
    let pa = StandalonePostgres::start(&dir, free_port()).await;
    let st = stolon_tests::connect_store(&etcd.endpoints(), CLUSTER).await;
    publish(&st, &cluster((pa.port(), pa.port()), Some("a"), 1, &["p1"])).await;
    // A store timeout far longer than proxyTimeout: fencing must come from the proxy's own
    // deadline, whatever store request (read, publish, watch) is pending when etcd goes away.
    let px = start_proxy(&dir, &etcd.endpoints(), "p1", &["--store-timeout", "20s"]);
    wait_applied(&st, "p1", 1).await;
    wait_until_desc("proxy up", Duration::from_secs(10), Duration::from_millis(100), || server_port_via(px.port)).await.unwrap();

    // A blip shorter than proxyTimeout (3s) must not drop connections.
    let kept = connect("127.0.0.1", px.port, "postgres", None, "postgres").await.unwrap();
    etcd.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    etcd.cont();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(query_i64(&kept, "SELECT 1::bigint").await.unwrap(), 1, "short blip closed a connection\n{}", px.guard.log_tail(30));

    // Longer than proxyTimeout: connections closed and the port stops listening.
    etcd.stop();
    // proxyTimeout (3s) plus generous slack, well below the 20s store timeout.
    wait_until_desc("proxy to stop listening", Duration::from_secs(10), Duration::from_millis(100), || async {
        TcpStream::connect(("127.0.0.1", px.port)).await.is_err()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", px.guard.log_tail(30)));
    assert!(query_i64(&kept, "SELECT 1::bigint").await.is_err(), "connection must be closed when fenced");
    assert!(health(px.metrics_port).await.contains(" 503 "), "fenced proxy must report unhealthy");

    // etcd back: listening again and forwarding.
    etcd.cont();
    let port = wait_until_desc("proxy to listen again", Duration::from_secs(15), Duration::from_millis(200), || server_port_via(px.port))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", px.guard.log_tail(30)));
    assert_eq!(port, i64::from(pa.port()));
    assert!(health(px.metrics_port).await.contains(" 200 "), "proxy back in service must report healthy");
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_survives_garbage_half_open_and_many_idle_connections() {
    let dir = TestDir::new("pxabuse");
    let etcd = Etcd::start_single(&dir).await;
    // The backend: a plain TCP server holding connections open and echoing, so hundreds of
    // connections do not hit PostgreSQL's max_connections.
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = backend.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 || sock.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let st = stolon_tests::connect_store(&etcd.endpoints(), CLUSTER).await;
    publish(&st, &cluster((backend_port, backend_port), Some("a"), 1, &["p1"])).await;
    let px = start_proxy(&dir, &etcd.endpoints(), "p1", &[]);
    wait_applied(&st, "p1", 1).await;
    // The proxy publishes the applied generation just before it starts listening.
    let mut s = wait_until_desc("proxy to listen", Duration::from_secs(10), Duration::from_millis(50), || async {
        TcpStream::connect(("127.0.0.1", px.port)).await
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", px.guard.log_tail(30)));

    // Garbage goes through untouched (L4), and does not hurt the proxy.
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    s.write_all(&garbage).await.unwrap();
    let mut echoed = vec![0u8; garbage.len()];
    s.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, garbage);

    // Half-open clients: connect, send nothing, close the write side.
    for _ in 0..20 {
        let mut s = TcpStream::connect(("127.0.0.1", px.port)).await.unwrap();
        s.shutdown().await.unwrap();
    }

    let rss_before = rss_kib(px.guard.pid());
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(TcpStream::connect(("127.0.0.1", px.port)).await.unwrap());
    }
    wait_until_desc("400 forwarded connections", Duration::from_secs(10), Duration::from_millis(100), || async {
        metric(px.metrics_port, "stolon_proxy_active_connections{port=\"rw\"}").await >= 400.0
    })
    .await
    .unwrap();
    let rss_with = rss_kib(px.guard.pid());
    // Keepalive is on by default on the client side of forwarded connections (the proxy's
    // sockets with the proxy port as source), so a vanished client is noticed.
    let ss = Command::new("ss").args(["-tnoH", "state", "established", "sport", "=", &format!(":{}", px.port)]).output().unwrap();
    let ss = String::from_utf8_lossy(&ss.stdout);
    let sockets = ss.lines().count();
    let with_keepalive = ss.lines().filter(|l| l.contains("timer:(keepalive")).count();
    assert!(sockets >= 400 && with_keepalive == sockets, "{with_keepalive} of {sockets} client sockets have keepalive:\n{ss}");
    // Two 16 KiB buffers per connection plus bookkeeping: far below 100 KiB each.
    let per_conn = (rss_with.saturating_sub(rss_before)) / 400;
    assert!(per_conn < 100, "RSS grew {per_conn} KiB per idle connection ({rss_before} -> {rss_with} KiB)");
    drop(idle);
    wait_until_desc("idle connections to close", Duration::from_secs(10), Duration::from_millis(100), || async {
        metric(px.metrics_port, "stolon_proxy_active_connections{port=\"rw\"}").await < 2.0
    })
    .await
    .unwrap();

    // Still alive and forwarding.
    assert!(px.guard.is_running(), "{}", px.guard.log_tail(30));
    let mut s = TcpStream::connect(("127.0.0.1", px.port)).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut pong = [0u8; 4];
    s.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"ping");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Clusterdata the proxy cannot use (corrupt JSON, a newer formatVersion, an invalid spec) fails
/// its check, as in Stolon: the proxy stops forwarding (open connections closed, new ones
/// refused) and, past proxyTimeout, fences itself; it must not keep routing to a master that a
/// sentinel of another version may already have replaced. A good clusterdata brings it back.
#[tokio::test(flavor = "multi_thread")]
async fn unreadable_clusterdata_stops_forwarding_until_it_is_readable_again() {
    let dir = TestDir::new("pxcorrupt");
    let etcd = Etcd::start_single(&dir).await;
    let pa = StandalonePostgres::start(&dir, free_port()).await;
    let st = stolon_tests::connect_store(&etcd.endpoints(), CLUSTER).await;
    let good = cluster((pa.port(), pa.port()), Some("a"), 1, &["p1"]);
    publish(&st, &good).await;
    let px = start_proxy(&dir, &etcd.endpoints(), "p1", &[]);
    wait_applied(&st, "p1", 1).await;
    let mut good_json: serde_json::Value = serde_json::from_slice(&good.to_json()).unwrap();
    let mut newer = good_json.clone();
    newer["formatVersion"] = serde_json::json!(99);
    let mut invalid = good_json.clone();
    invalid["cluster"]["spec"]["proxyCheckInterval"] = serde_json::json!("10s");
    let mut client = etcd.client().await.unwrap();
    for (what, bad) in [("corrupt JSON", "{corrupt".to_string()), ("a newer format", newer.to_string()), ("an invalid spec", invalid.to_string())] {
        let kept = wait_until_desc("proxy up", Duration::from_secs(10), Duration::from_millis(100), || async {
            connect("127.0.0.1", px.port, "postgres", None, "postgres").await
        })
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}\n{}", px.guard.log_tail(30)));
        assert_eq!(query_i64(&kept, "SELECT 1::bigint").await.unwrap(), 1);
        client.put(st.keys().cluster_data(), bad.as_str(), None).await.unwrap();
        // Within proxyTimeout (3s) of the unreadable read: no forwarding at all.
        wait_until_desc(&format!("{what}: the open connection to close"), Duration::from_secs(3), Duration::from_millis(100), || async {
            query_i64(&kept, "SELECT 1::bigint").await.is_err().then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", px.guard.log_tail(30)));
        assert!(server_port_via(px.port).await.is_err(), "{what}: a new connection was forwarded");
        // Past proxyTimeout the proxy has fenced itself: not listening, unhealthy.
        wait_until_desc(&format!("{what}: the proxy to stop listening"), Duration::from_secs(6), Duration::from_millis(100), || async {
            TcpStream::connect(("127.0.0.1", px.port)).await.is_err().then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", px.guard.log_tail(30)));
        assert!(health(px.metrics_port).await.contains(" 503 "), "{what}: a fenced proxy reports unhealthy");
        assert!(px.guard.is_running());
        // An operator restores a good clusterdata: forwarding resumes.
        good_json["changeTime"] = serde_json::json!(Utc::now());
        client.put(st.keys().cluster_data(), good_json.to_string(), None).await.unwrap();
        let port = wait_until_desc(&format!("{what}: forwarding to resume"), Duration::from_secs(10), Duration::from_millis(100), || server_port_via(px.port))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", px.guard.log_tail(30)));
        assert_eq!(port, i64::from(pa.port()));
    }
}

/// A proxy that can read clusterdata but cannot publish its info (etcd's NOSPACE alarm: reads
/// work, writes fail) is, for the sentinel, a silent proxy it stops waiting for after
/// proxyTimeout; so the proxy must fence itself by then too, and not extend its deadline on the
/// reads alone. Once it can publish again it serves again.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_that_reads_but_cannot_publish_fences_itself() {
    let dir = TestDir::new("pxnospace");
    let etcd = Etcd::start_single(&dir).await;
    let pa = StandalonePostgres::start(&dir, free_port()).await;
    let st = stolon_tests::connect_store(&etcd.endpoints(), CLUSTER).await;
    publish(&st, &cluster((pa.port(), pa.port()), Some("a"), 1, &["p1"])).await;
    let px = start_proxy(&dir, &etcd.endpoints(), "p1", &[]);
    wait_applied(&st, "p1", 1).await;
    let kept = wait_until_desc("proxy up", Duration::from_secs(10), Duration::from_millis(100), || async {
        connect("127.0.0.1", px.port, "postgres", None, "postgres").await
    })
    .await
    .unwrap();

    let mut client = etcd.client().await.unwrap();
    let member = client.status().await.unwrap().header().unwrap().member_id();
    let alarm = |action| {
        let mut client = client.clone();
        async move {
            let mut opts = etcd_client::AlarmOptions::new();
            opts.with_member(member);
            client.alarm(action, etcd_client::AlarmType::Nospace, Some(opts)).await.unwrap();
        }
    };
    alarm(etcd_client::AlarmAction::Activate).await;
    assert!(st.get_cluster_data().await.unwrap().is_some(), "reads still work");
    // proxyTimeout is 3s; the publish that failed first was sent at most one check interval
    // (500ms) after the last one stored.
    wait_until_desc("the proxy to fence itself", Duration::from_secs(6), Duration::from_millis(100), || async {
        TcpStream::connect(("127.0.0.1", px.port)).await.is_err().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", px.guard.log_tail(30)));
    assert!(query_i64(&kept, "SELECT 1::bigint").await.is_err(), "connection must be closed when fenced");

    alarm(etcd_client::AlarmAction::Deactivate).await;
    let port = wait_until_desc("proxy to serve again", Duration::from_secs(15), Duration::from_millis(200), || server_port_via(px.port))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", px.guard.log_tail(30)));
    assert_eq!(port, i64::from(pa.port()));
}

/// A proxy frozen (SIGSTOP) for longer than proxyTimeout while a client has a connection open:
/// what the client sent during the freeze must not reach the backend when the proxy thaws,
/// because a sentinel may have published a new master meanwhile (the proxy was silent for
/// proxyTimeout). Every forwarded chunk is checked against the fencing deadline.
#[tokio::test(flavor = "multi_thread")]
async fn a_thawed_proxy_forwards_nothing_sent_after_its_deadline() {
    let dir = TestDir::new("pxfreeze");
    let etcd = Etcd::start_single(&dir).await;
    // The backend records every byte it receives.
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = backend.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    if sock.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let st = stolon_tests::connect_store(&etcd.endpoints(), CLUSTER).await;
    publish(&st, &cluster((backend_port, backend_port), Some("a"), 1, &["p1"])).await;
    let px = start_proxy(&dir, &etcd.endpoints(), "p1", &[]);
    wait_applied(&st, "p1", 1).await;
    let mut s = wait_until_desc("proxy to listen", Duration::from_secs(10), Duration::from_millis(50), || async {
        TcpStream::connect(("127.0.0.1", px.port)).await
    })
    .await
    .unwrap();
    s.write_all(b"before;").await.unwrap();
    let mut echo = [0u8; 7];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"before;");

    // Frozen longer than proxyTimeout (3s); the client writes right before the thaw.
    assert!(px.guard.signal("STOP"));
    tokio::time::sleep(Duration::from_millis(4000)).await;
    s.write_all(b"INSERT-after-deadline;").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(px.guard.signal("CONT"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = String::from_utf8_lossy(&received.lock().unwrap()).into_owned();
    assert_eq!(got, "before;", "bytes sent after the fencing deadline reached the backend\n{}", px.guard.log_tail(30));
    // And the connection itself is closed.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(_)) | Ok(Err(_))), "the connection must be closed after the freeze");
    assert!(rest.is_empty(), "nothing echoed: {rest:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_port_refuses_when_no_standby_is_fit_and_never_uses_the_master() {
    let dir = TestDir::new("pxro");
    let etcd = Etcd::start_single(&dir).await;
    let pa = StandalonePostgres::start(&dir, free_port()).await;
    let st = stolon_tests::connect_store(&etcd.endpoints(), CLUSTER).await;
    // Only a master, no standby at all.
    publish(&st, &cluster((pa.port(), pa.port()), Some("a"), 1, &["p1"])).await;
    let ro_port = free_port();
    let px = start_proxy(&dir, &etcd.endpoints(), "p1", &["--ro-port", &ro_port.to_string()]);
    wait_applied(&st, "p1", 1).await;
    wait_until_desc("read-write port up", Duration::from_secs(10), Duration::from_millis(100), || server_port_via(px.port)).await.unwrap();
    // The read-only listener accepts and closes at once: clients get an error, not the master.
    assert!(server_port_via(ro_port).await.is_err(), "read-only port must not reach the master");
    assert!(metric(px.metrics_port, "stolon_proxy_refused_connections_total{port=\"ro\"}").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_accepting_and_drains_within_the_bound() {
    let dir = TestDir::new("pxterm");
    let etcd = Etcd::start_single(&dir).await;
    let pa = StandalonePostgres::start(&dir, free_port()).await;
    let st = stolon_tests::connect_store(&etcd.endpoints(), CLUSTER).await;
    publish(&st, &cluster((pa.port(), pa.port()), Some("a"), 1, &["p1"])).await;
    let mut px = start_proxy(&dir, &etcd.endpoints(), "p1", &["--shutdown-timeout", "3s"]);
    wait_applied(&st, "p1", 1).await;
    let open = wait_until_desc("proxy up", Duration::from_secs(10), Duration::from_millis(100), || async {
        connect("127.0.0.1", px.port, "postgres", None, "postgres").await
    })
    .await
    .unwrap();

    assert!(px.guard.signal("TERM"));
    wait_until_desc("the port to close", Duration::from_secs(5), Duration::from_millis(50), || async {
        TcpStream::connect(("127.0.0.1", px.port)).await.is_err()
    })
    .await
    .unwrap();
    // The open connection keeps working while draining...
    assert_eq!(query_i64(&open, "SELECT 1::bigint").await.unwrap(), 1);
    // ...and the proxy exits by itself once the bound has passed.
    let status = px.guard.wait_exit(Duration::from_secs(10)).expect("proxy exits after the drain bound");
    assert!(status.success(), "{status:?}\n{}", px.guard.log_tail(20));
    // The proxy info is withdrawn on a clean stop.
    let infos: BTreeMap<String, ProxyInfo> = st.list_infos(InfoKind::Proxy).await.unwrap();
    assert!(!infos.contains_key("p1"));
}
