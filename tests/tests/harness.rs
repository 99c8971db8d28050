//! Self-tests of the harness: every fixture is exercised against the real
//! thing (etcd, PostgreSQL, process groups) so a failing integration test
//! can be blamed on the code under test, not on the harness.

use std::process::Command;
use std::time::Duration;

use stolon_tests::postgres::{pg_major_version, postgres_command, query_i64, query_string};
use stolon_tests::process::pid_alive;
use stolon_tests::{
    free_ports, wait_until, wait_until_desc, ChildGuard, Etcd, EtcdCluster, StandalonePostgres,
    TestDir,
};

const SHORT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

#[test]
fn free_ports_are_distinct_and_bindable() {
    // A listening socket is "in use" and must be skipped.
    let busy = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let busy_port = busy.local_addr().expect("addr").port();
    let ports = free_ports(50);
    assert!(!ports.contains(&busy_port));
    let unique: std::collections::HashSet<_> = ports.iter().collect();
    assert_eq!(unique.len(), ports.len(), "duplicate port in {ports:?}");
    for port in ports {
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("handed-out port is bindable");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn single_etcd_put_get_and_restart_keeps_data() {
    let dir = TestDir::new("etcd1");
    let mut etcd = Etcd::start_single(&dir).await;
    assert!(etcd.endpoints().starts_with("http://127.0.0.1:"));
    let mut client = etcd.client().await.expect("connect");
    client.put("k", "v1", None).await.expect("put");
    let resp = client.get("k", None).await.expect("get");
    assert_eq!(resp.kvs()[0].value(), b"v1");

    etcd.kill();
    assert!(!etcd.is_running());
    assert!(
        client.get("k", None).await.is_err(),
        "killed etcd still answers"
    );

    etcd.restart().await;
    let mut client = etcd.client().await.expect("reconnect");
    let resp = client.get("k", None).await.expect("get after restart");
    assert_eq!(
        resp.kvs()[0].value(),
        b"v1",
        "data dir not reused on restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn frozen_etcd_times_out_then_recovers() {
    let dir = TestDir::new("etcdstop");
    let etcd = Etcd::start_single(&dir).await;
    let mut client = etcd.client().await.expect("connect");
    client.put("k", "v", None).await.expect("put");

    etcd.stop();
    let frozen = tokio::time::timeout(Duration::from_secs(5), client.get("k", None)).await;
    assert!(!matches!(frozen, Ok(Ok(_))), "frozen etcd answered");
    etcd.cont();

    wait_until_desc("etcd answers after SIGCONT", SHORT, POLL, || {
        let mut client = client.clone();
        async move { client.get("k", None).await }
    })
    .await
    .expect("etcd back");
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_cluster_replicates_and_survives_one_member_loss() {
    let dir = TestDir::new("etcd3");
    let mut cluster = EtcdCluster::start(&dir, 3).await;
    assert_eq!(cluster.client_urls().len(), 3);
    assert_eq!(cluster.endpoints().split(',').count(), 3);

    let mut client = cluster.member_client(0).await.expect("connect member 0");
    client.put("shared", "1", None).await.expect("put");
    for i in 0..3 {
        let mut client = cluster.member_client(i).await.expect("connect member");
        let resp = client.get("shared", None).await.expect("linearizable get");
        assert_eq!(resp.kvs()[0].value(), b"1", "member {i}");
    }

    cluster.kill_member(0);
    assert!(!cluster.member(0).is_running());
    // Member 0 may have been the leader: allow an election.
    let mut survivor = cluster.member_client(1).await.expect("connect member 1");
    wait_until_desc("write with one member down", SHORT, POLL, || {
        let mut client = survivor.clone();
        async move { client.put("shared", "2", None).await }
    })
    .await
    .expect("cluster writable with 2 of 3");
    let resp = cluster
        .member_client(2)
        .await
        .expect("c2")
        .get("shared", None)
        .await
        .expect("get");
    assert_eq!(resp.kvs()[0].value(), b"2");

    cluster.restart_member(0).await;
    let resp = cluster
        .member_client(0)
        .await
        .expect("c0")
        .get("shared", None)
        .await
        .expect("get");
    assert_eq!(resp.kvs()[0].value(), b"2", "restarted member caught up");
    survivor
        .put("shared", "3", None)
        .await
        .expect("put after rejoin");
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_postgres_runs_as_postgres_and_answers() {
    assert!(pg_major_version() >= 12);
    let dir = TestDir::new("pg");
    let port = stolon_tests::free_port();
    let pg = StandalonePostgres::start(&dir, port).await;
    let client = pg.connect().await.expect("connect");
    assert_eq!(
        query_i64(&client, "SELECT 1::int8").await.expect("select"),
        1
    );
    let user = query_string(&client, "SELECT current_user::text")
        .await
        .expect("user");
    assert_eq!(user, "postgres");
    let version = query_i64(
        &client,
        "SELECT current_setting('server_version_num')::int8",
    )
    .await
    .expect("v");
    assert_eq!(version / 10_000, i64::from(pg_major_version()));

    // The socket dir works as a host too.
    let socket = pg.socket_dir().to_str().expect("utf8 path").to_owned();
    let via_socket = stolon_tests::postgres::connect(&socket, port, "postgres", None, "postgres")
        .await
        .expect("unix socket connect");
    assert_eq!(
        query_i64(&via_socket, "SELECT 2::int8")
            .await
            .expect("select"),
        2
    );

    // The server process belongs to the postgres OS user.
    let owner = Command::new("stat")
        .args(["-c", "%U"])
        .arg(format!("/proc/{}", pg_pid(&pg)))
        .output()
        .expect("stat");
    assert_eq!(String::from_utf8_lossy(&owner.stdout).trim(), "postgres");
}

fn pg_pid(pg: &StandalonePostgres) -> String {
    std::fs::read_to_string(pg.data_dir().join("postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .expect("pid line")
        .to_owned()
}

#[test]
fn run_as_postgres_switches_user_and_drops_root_groups() {
    let out = postgres_command("id").output().expect("id");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("uid=101(postgres)") || text.contains("(postgres) gid="),
        "{text}"
    );
    assert!(!text.contains("(root)"), "root privileges left: {text}");
}

/// Members of `guard`'s group once the shell has started both sleeps.
async fn wait_for_group(guard: &ChildGuard, at_least: usize) -> Vec<u32> {
    wait_until(SHORT, POLL, || async {
        let pids = guard.group_pids();
        (pids.len() >= at_least).then_some(pids)
    })
    .await
    .expect("group members")
}

#[tokio::test(flavor = "multi_thread")]
async fn child_guard_drop_kills_whole_group() {
    let dir = TestDir::new("guard");
    let log = dir.log_path("sleepers");
    let guard = ChildGuard::spawn(
        "sleepers",
        Command::new("sh").args(["-c", "echo started; sleep 1000 & sleep 1000"]),
        &log,
    );
    let leader = guard.pid();
    let pids = wait_for_group(&guard, 3).await;
    assert!(pids.contains(&leader));
    assert!(guard.is_running());
    drop(guard);
    for pid in pids {
        assert!(!pid_alive(pid), "pid {pid} survived the guard");
    }
    assert!(stolon_tests::process::log_tail(&log, 5).contains("started"));
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_only_the_leader_leaves_orphans_until_drop() {
    let dir = TestDir::new("guard3");
    let guard = ChildGuard::spawn(
        "orphans",
        Command::new("sh").args(["-c", "sleep 1000 & sleep 1000"]),
        &dir.log_path("orphans"),
    );
    let pids = wait_for_group(&guard, 3).await;
    guard.kill9_leader_only();
    assert!(!guard.is_running());
    let orphans: Vec<u32> = pids.into_iter().filter(|pid| *pid != guard.pid()).collect();
    assert!(
        orphans.iter().all(|pid| pid_alive(*pid)),
        "orphans died with the leader"
    );
    drop(guard);
    for pid in orphans {
        assert!(!pid_alive(pid), "orphan {pid} survived the guard");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn child_guard_stop_cont_terminate_and_kill9() {
    let dir = TestDir::new("guard2");
    // `exec` makes the shell itself the sleep, so SIGTERM ends the leader.
    let mut guard = ChildGuard::spawn(
        "sleeper",
        Command::new("sh").args(["-c", "echo hello; echo oops >&2; exec sleep 1000"]),
        &dir.log_path("sleeper"),
    );
    wait_until(SHORT, POLL, || async { guard.log_tail(2).contains("oops") })
        .await
        .expect("output logged");
    assert!(guard.log_tail(10).contains("hello"));

    guard.stop();
    let state = || std::fs::read_to_string(format!("/proc/{}/stat", guard.pid())).expect("stat");
    wait_until(SHORT, POLL, || async { state().contains(") T ") })
        .await
        .expect("stopped");
    assert!(
        guard.is_running(),
        "a stopped process still counts as running"
    );
    guard.cont();
    wait_until(SHORT, POLL, || async { !state().contains(") T ") })
        .await
        .expect("continued");

    // terminate also works on a frozen process (SIGCONT follows SIGTERM).
    guard.stop();
    let status = guard
        .terminate(Duration::from_secs(5))
        .expect("exit status");
    assert!(!status.success());
    assert!(!guard.is_running());

    let mut guard = ChildGuard::spawn(
        "sleeper2",
        Command::new("sleep").arg("1000"),
        &dir.log_path("sleeper2"),
    );
    let pid = guard.pid();
    assert!(guard.kill9().is_some());
    assert!(!pid_alive(pid));
    assert!(!guard.is_running());
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_until_reports_timeout_with_last_error() {
    let err = wait_until_desc(
        "the impossible",
        Duration::from_millis(200),
        Duration::from_millis(20),
        || async { Err::<(), _>("still broken") },
    )
    .await
    .expect_err("must time out");
    assert!(
        err.contains("the impossible") && err.contains("still broken"),
        "{err}"
    );

    let mut n = 0;
    let value = wait_until(SHORT, Duration::from_millis(1), || {
        n += 1;
        let n = n;
        async move { (n >= 3).then_some(n) }
    })
    .await
    .expect("eventually");
    assert_eq!(value, 3);

    // A hanging probe cannot overrun the deadline.
    let start = std::time::Instant::now();
    let err = wait_until(Duration::from_millis(300), POLL, || async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        true
    })
    .await
    .expect_err("hung probe");
    assert!(start.elapsed() < Duration::from_secs(5), "{err}");
}

#[test]
fn bin_dir_is_the_target_profile_dir() {
    let dir = stolon_tests::bin_dir();
    assert!(
        dir.join("deps").is_dir() || std::env::var_os("STOLON_BIN_DIR").is_some(),
        "{}",
        dir.display()
    );
}
