//! stolon-keeper's start-up refusals: root, a data dir already in use, bad flags; and --help.

use std::process::Command;
use std::time::Duration;
use stolon_tests::postgres::{pg_bin_dir, postgres_command};
use stolon_tests::{bin_path, wait_until_desc, ChildGuard, Etcd, TestDir, KEEPER};

fn keeper_args(endpoints: &str, data_dir: &std::path::Path, port: u16) -> Vec<String> {
    vec![
        "--cluster-name".into(),
        "kc".into(),
        "--store-endpoints".into(),
        endpoints.into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--pg-listen-address".into(),
        "127.0.0.1".into(),
        "--pg-port".into(),
        port.to_string(),
        "--pg-bin-path".into(),
        pg_bin_dir().display().to_string(),
        "--pg-repl-username".into(),
        "repl".into(),
        "--pg-su-auth-method".into(),
        "trust".into(),
        "--pg-repl-auth-method".into(),
        "trust".into(),
    ]
}

/// Runs `cmd` to completion with its output in `dir`'s log `name`, but never longer than
/// `timeout`: a keeper that does not refuse would otherwise run (and hang the suite) forever.
fn run_bounded(dir: &TestDir, name: &str, cmd: &mut Command, timeout: Duration) -> (std::process::ExitStatus, String) {
    let mut child = ChildGuard::spawn(name, cmd, &dir.log_path(name));
    match child.wait_exit(timeout) {
        Some(status) => (status, child.log_tail(50)),
        None => panic!("{name} still runs after {timeout:?}; it should have refused to start:\n{}", child.log_tail(30)),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keeper_refuses_root_and_a_data_dir_in_use() {
    let dir = TestDir::new("kcli");
    let etcd = Etcd::start_single(&dir).await;
    let data = dir.postgres_subdir("k");
    let args = keeper_args(&etcd.endpoints(), &data, stolon_tests::free_port());

    // As root: refused with a message that says what to do.
    let (status, err) = run_bounded(&dir, "keeper-root", Command::new(bin_path(KEEPER)).args(&args), Duration::from_secs(30));
    assert!(!status.success());
    assert!(err.contains("root") && err.contains("postgres"), "{err}");

    // A second keeper on the same data dir fails at once, naming the lock. The first one logs
    // "stolon-keeper starting" only once it holds the lock; waiting for any earlier line (the
    // harness' own "===== starting" header, say) would let the second one win the race.
    let mut first_cmd = postgres_command(bin_path(KEEPER));
    first_cmd.args(&args);
    let first = ChildGuard::spawn("keeper-first", &mut first_cmd, &dir.log_path("keeper-first"));
    wait_until_desc("the first keeper to hold its lock", Duration::from_secs(30), Duration::from_millis(100), || async {
        first.log_tail(50).contains("stolon-keeper starting")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", first.log_tail(30)));
    let started = std::time::Instant::now();
    let (status, err) = run_bounded(&dir, "keeper-second", postgres_command(bin_path(KEEPER)).args(&args), Duration::from_secs(30));
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(10), "must fail at once, took {:?}", started.elapsed());
    assert!(err.contains("lock") || err.contains("in use") || err.contains("another keeper"), "{err}");
    assert!(first.is_running(), "{}", first.log_tail(30));
}

#[test]
fn keeper_help_lists_every_flag_with_its_env_var() {
    let out = Command::new(bin_path(KEEPER)).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for var in ["STKEEPER_DATA_DIR", "STKEEPER_PG_SU_PASSWORDFILE", "STKEEPER_PG_REPL_USERNAME", "STKEEPER_CAN_BE_MASTER", "STKEEPER_CLUSTER_NAME"] {
        assert!(help.contains(var), "{var} missing from --help");
    }
    // Missing required flags: usage error, non-zero.
    let out = Command::new(bin_path(KEEPER)).output().unwrap();
    assert!(!out.status.success());
}
