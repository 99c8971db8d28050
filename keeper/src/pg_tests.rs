//! What the keeper reads from a real PostgreSQL (the contract of `PostgresState`): a standby's
//! replayed timeline while its walreceiver is down, its position (received, not only
//! replayed), and a master's in-sync standbys. PostgreSQL runs as the `postgres` OS user
//! (`stolon_tests`); the keeper's reads run in this process, as the keeper would.

use crate::config::KeeperConfig;
use crate::observe;
use crate::sql::PgStatus;
use std::path::{Path, PathBuf};
use std::time::Duration;
use stolon_tests::postgres::{self as tpg, postgres_command, StandalonePostgres};
use stolon_tests::process::ChildGuard;
use stolon_tests::testdir::TestDir;
use tokio_postgres::Client;

/// A standby copied from `source` with pg_basebackup, running on its own port and socket dir.
struct Standby {
    base: PathBuf,
    port: u16,
    guard: ChildGuard,
}

impl Standby {
    async fn start(dir: &TestDir, source_port: u16, app_name: &str) -> Standby {
        let port = stolon_tests::free_port();
        let name = format!("pg-{port}");
        let base = dir.postgres_subdir(&name);
        let data = base.join("data");
        let out = postgres_command(tpg::pg_bin("pg_basebackup"))
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &source_port.to_string(), "-U", "postgres", "-X", "stream", "-c", "fast", "-R"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_basebackup: {out:?}");
        // In postgresql.auto.conf (the last line wins over -R's), so ALTER SYSTEM can repoint it.
        let conninfo = format!("primary_conninfo = 'host=127.0.0.1 port={source_port} user=postgres application_name={app_name}'\n");
        let auto = data.join("postgresql.auto.conf");
        let text = std::fs::read_to_string(&auto).unwrap();
        std::fs::write(&auto, text + &conninfo).unwrap();
        let mut cmd = postgres_command(tpg::pg_bin("postgres"));
        cmd.arg("-D").arg(&data).arg("-p").arg(port.to_string());
        cmd.args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        cmd.arg("-c").arg(format!("unix_socket_directories={}", base.display()));
        let guard = ChildGuard::spawn(&name, &mut cmd, &dir.log_path(&name));
        let standby = Standby { base, port, guard };
        if let Err(e) = tpg::wait_for_sql("127.0.0.1", port, "postgres", None, "postgres", Duration::from_secs(30)).await {
            panic!("{name}: {e}\n{}", standby.guard.log_tail(40));
        }
        standby
    }

    async fn connect(&self) -> Client {
        tpg::connect("127.0.0.1", self.port, "postgres", None, "postgres").await.unwrap()
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.guard.shutdown("QUIT", Duration::from_secs(5));
    }
}

/// The keeper's config for a postgres whose socket dir is `base` and data dir `base/data`.
fn keeper_config(base: &Path, port: u16) -> KeeperConfig {
    let mut cfg = crate::desired::tests::config("k");
    cfg.data_dir = base.to_path_buf();
    cfg.pgdata = base.join("data");
    cfg.port = port;
    cfg.su_username = "postgres".into();
    cfg
}

async fn status(cfg: &KeeperConfig) -> PgStatus {
    observe::pg_status(cfg, Duration::from_secs(10)).await.expect("postgres answers the status check")
}

async fn lsn(client: &Client, sql: &str) -> u64 {
    let text = tpg::query_string(client, sql).await.unwrap();
    crate::info::parse_lsn(&text).unwrap()
}

/// Polls `cond` (an async boolean expression) until it holds, for at most 30 s.
macro_rules! wait_for {
    ($what:expr, $cond:expr) => {{
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !$cond {
            assert!(std::time::Instant::now() < deadline, "timed out waiting: {}", $what);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }};
}

#[tokio::test]
async fn a_standby_on_timeline_2_reports_2_while_its_walreceiver_is_down() {
    let dir = TestDir::new("ktli");
    let primary = StandalonePostgres::start(&dir, stolon_tests::free_port()).await;
    let new_master = Standby::start(&dir, primary.port(), "stolon_a").await;
    let standby = Standby::start(&dir, primary.port(), "stolon_b").await;
    drop(primary);
    // Failover #1: A is promoted (timeline 2); B is repointed to A and follows timeline 2.
    let a = new_master.connect().await;
    a.batch_execute("SELECT pg_promote(true, 60)").await.unwrap();
    let b = standby.connect().await;
    b.batch_execute(&format!("ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name=stolon_b'", new_master.port)).await.unwrap();
    b.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    a.batch_execute("CREATE TABLE t AS SELECT 1 AS x").await.unwrap();
    let target = lsn(&a, "SELECT pg_current_wal_lsn()::text").await;
    wait_for!("B replays A's timeline-2 WAL", lsn(&b, "SELECT pg_last_wal_replay_lsn()::text").await >= target);
    // Failover #2 begins: A dies, so B's walreceiver disconnects.
    drop(a);
    drop(new_master);
    wait_for!("B's walreceiver is down", tpg::query_i64(&b, "SELECT count(*) FROM pg_stat_wal_receiver").await.unwrap() == 0);
    let checkpoint_tli = tpg::query_i64(&b, "SELECT timeline_id::int8 FROM pg_control_checkpoint()").await.unwrap();
    assert_eq!(checkpoint_tli, 1, "the scenario needs B not to have done a restartpoint on timeline 2 yet");
    // The keeper's own pg_hba line for its socket (`local all <su> trust`, hba.rs) admits the
    // `replication=database` connection: no `replication` line is needed.
    std::fs::write(standby.base.join("data/pg_hba.conf"), "local all postgres trust\nhost all all 127.0.0.1/32 trust\n").unwrap();
    b.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    let s = status(&keeper_config(&standby.base, standby.port)).await;
    assert!(s.in_recovery);
    assert_eq!(s.timeline_id, 2, "B replays timeline 2: {s:?}");
    assert!(s.xlog_pos >= target, "position {:X} < {target:X}", s.xlog_pos);
}

#[tokio::test]
async fn a_master_reports_an_in_sync_standby_only_while_it_streams_and_a_standby_its_received_position() {
    let dir = TestDir::new("ksync");
    let primary = StandalonePostgres::start(&dir, stolon_tests::free_port()).await;
    let p = primary.connect().await.unwrap();
    p.batch_execute("ALTER SYSTEM SET synchronous_standby_names = '1 (stolon_s1)'").await.unwrap();
    p.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    let master_cfg = keeper_config(primary.socket_dir(), primary.port());
    // Configured, but no such standby: nothing is in sync (before, the configured name was
    // reported as an in-sync standby).
    let s = status(&master_cfg).await;
    assert!(!s.in_recovery);
    assert_eq!(s.synchronous_standbys, Vec::<String>::new(), "nothing streams yet");

    let standby = Standby::start(&dir, primary.port(), "stolon_s1").await;
    wait_for!("s1 streams in sync", status(&master_cfg).await.synchronous_standbys == ["s1"]);

    // The standby's position is what it received, not only what it replayed.
    let s1 = standby.connect().await;
    s1.batch_execute("SELECT pg_wal_replay_pause()").await.unwrap();
    p.batch_execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS x").await.unwrap();
    let written = lsn(&p, "SELECT pg_current_wal_lsn()::text").await;
    wait_for!("s1 receives the new WAL", lsn(&s1, "SELECT pg_last_wal_receive_lsn()::text").await >= written);
    let replayed = lsn(&s1, "SELECT pg_last_wal_replay_lsn()::text").await;
    assert!(replayed < written, "replay is paused");
    let s = status(&keeper_config(&standby.base, standby.port)).await;
    assert!(s.in_recovery && s.streaming);
    assert!(s.xlog_pos >= written, "reported {:X}, received {written:X}, replayed {replayed:X}", s.xlog_pos);
    s1.batch_execute("SELECT pg_wal_replay_resume()").await.unwrap();

    // The standby stops: it is no longer in sync, although still configured.
    drop(s1);
    drop(standby);
    wait_for!("s1 is gone from pg_stat_replication", tpg::query_i64(&p, "SELECT count(*) FROM pg_stat_replication").await.unwrap() == 0);
    assert_eq!(status(&master_cfg).await.synchronous_standbys, Vec::<String>::new());
}
