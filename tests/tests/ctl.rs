//! stolonctl end to end against a real etcd: init, status, spec, update, failkeeper, and the
//! bad-input cases (malformed spec, unknown field accepted with a warning, negative duration, unreachable etcd, wrong
//! cluster name): clear error, non-zero exit, nothing written.

use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;
use stolon_tests::{bin_path, Etcd, TestDir, STOLONCTL};

fn ctl(endpoints: &str, cluster: &str, args: &[&str]) -> Output {
    Command::new(bin_path(STOLONCTL))
        .args(["--cluster-name", cluster, "--store-endpoints", endpoints, "--store-timeout", "2s"])
        .args(args)
        .output()
        .expect("run stolonctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}


#[tokio::test(flavor = "multi_thread")]
async fn init_status_spec_update_end_to_end() {
    let dir = TestDir::new("ctl");
    let etcd = Etcd::start_single(&dir).await;
    let ep = etcd.endpoints();

    let out = ctl(&ep, "c1", &["init", r#"{"initMode":"new","failInterval":"6s"}"#]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Text status: readable, with the phase.
    let out = ctl(&ep, "c1", &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("phase: initializing"), "{}", stdout(&out));

    // JSON status: the documented shape.
    let out = ctl(&ep, "c1", &["status", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(v["sentinels"].is_array() && v["proxies"].is_array() && v["keepers"].is_array(), "{v}");
    assert_eq!(v["cluster"]["available"], Value::Bool(false));
    assert!(v["cluster"].get("master_keeper_uid").is_some() && v["cluster"].get("master_db_uid").is_some());
    let out = ctl(&ep, "c1", &["status", "-f", "json"]);
    assert!(out.status.success(), "-f is --format for status: {}", stderr(&out));

    // spec: as given; --defaults: filled in.
    let spec: Value = serde_json::from_str(&stdout(&ctl(&ep, "c1", &["spec"]))).unwrap();
    assert_eq!(spec, serde_json::json!({"initMode":"new","failInterval":"6s"}));
    let full: Value = serde_json::from_str(&stdout(&ctl(&ep, "c1", &["spec", "--defaults"]))).unwrap();
    assert_eq!(full["failInterval"], "6s");
    assert_eq!(full["sleepInterval"], "1s");
    assert_eq!(full["proxyTimeout"], "4s");

    // update --patch merges; a full update replaces; an invalid patch changes nothing.
    let out = ctl(&ep, "c1", &["update", "--patch", r#"{"maxStandbyLag":4096}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    let spec: Value = serde_json::from_str(&stdout(&ctl(&ep, "c1", &["spec"]))).unwrap();
    assert_eq!(spec["maxStandbyLag"], 4096);
    assert_eq!(spec["failInterval"], "6s");
    let out = ctl(&ep, "c1", &["update", "-p", r#"{"proxyCheckInterval":"10s"}"#]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("proxyCheckInterval"), "{}", stderr(&out));
    let spec: Value = serde_json::from_str(&stdout(&ctl(&ep, "c1", &["spec"]))).unwrap();
    assert!(spec.get("proxyCheckInterval").is_none());
    let spec_file = dir.path().join("spec.json");
    std::fs::write(&spec_file, r#"{"initMode":"new","sleepInterval":"2s"}"#).unwrap();
    let out = ctl(&ep, "c1", &["update", "-f", spec_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let spec: Value = serde_json::from_str(&stdout(&ctl(&ep, "c1", &["spec"]))).unwrap();
    assert_eq!(spec, serde_json::json!({"initMode":"new","sleepInterval":"2s"}));

    // failkeeper on an unknown keeper is refused.
    let out = ctl(&ep, "c1", &["failkeeper", "nosuchkeeper"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nosuchkeeper"), "{}", stderr(&out));

    // clusterdata read prints the stored document.
    let raw: Value = serde_json::from_str(&stdout(&ctl(&ep, "c1", &["clusterdata", "read"]))).unwrap();
    assert_eq!(raw["formatVersion"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn init_refuses_to_replace_without_yes() {
    let dir = TestDir::new("ctlyes");
    let etcd = Etcd::start_single(&dir).await;
    let ep = etcd.endpoints();
    assert!(ctl(&ep, "c1", &["init"]).status.success());
    let st = stolon_tests::connect_store(&ep, "c1").await;
    let before = st.get_cluster_data().await.unwrap().unwrap();

    let out = ctl(&ep, "c1", &["init"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already initialized") && stderr(&out).contains("-y"), "{}", stderr(&out));
    assert_eq!(st.get_cluster_data().await.unwrap().unwrap().revision, before.revision, "nothing written");

    let out = ctl(&ep, "c1", &["init", "-y", r#"{"initMode":"new"}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = st.get_cluster_data().await.unwrap().unwrap();
    assert_ne!(after.value.cluster.uid, before.value.cluster.uid, "a new cluster uid");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_nothing_is_written() {
    let dir = TestDir::new("ctlbad");
    let etcd = Etcd::start_single(&dir).await;
    let ep = etcd.endpoints();
    let cases: &[(&str, &str)] = &[
        (r#"{"initMode":"new""#, "EOF"),
        (r#"{"initMode":"new","failInterval":"-5s"}"#, "failInterval"),
        (r#"{"initMode":"new","proxyCheckInterval":"5s","proxyTimeout":"5s"}"#, "proxyCheckInterval"),
        (r#"{"initMode":"new","minSynchronousStandbys":2,"maxSynchronousStandbys":1}"#, "maxSynchronousStandbys"),
        (r#"{"failInterval":"5s"}"#, "initMode"),
    ];
    for (spec, needle) in cases {
        let out = ctl(&ep, "c1", &["init", spec]);
        assert!(!out.status.success(), "accepted {spec}");
        assert!(stderr(&out).contains(needle), "error for {spec} should name {needle}: {}", stderr(&out));
    }
    // A spec file that does not exist.
    let out = ctl(&ep, "c1", &["init", "-f", "/nonexistent/spec.json"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent/spec.json"), "{}", stderr(&out));
    assert!(stolon_tests::connect_store(&ep, "c1").await.get_cluster_data_raw().await.unwrap().is_none(), "nothing was written");

    // An unknown field (a newer version's, or a typo) is accepted with a warning naming it,
    // and stored as given.
    let out = ctl(&ep, "c1", &["init", r#"{"initMode":"new","bogus":true}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning") && stderr(&out).contains("bogus"), "{}", stderr(&out));
    let cd = stolon_tests::connect_store(&ep, "c1").await.get_cluster_data().await.unwrap().unwrap();
    assert_eq!(cd.value.cluster.spec.unknown_fields(), vec!["bogus".to_string()]);

    // Wrong cluster name: a clear error, non-zero exit.
    let out = ctl(&ep, "c2", &["status"]);
    assert!(!out.status.success());
    // The chart's init job relies on this wording to tell "not initialized" apart.
    assert!(stderr(&out).contains("no clusterdata"), "{}", stderr(&out));
    assert!(stderr(&out).contains("c2") && stderr(&out).contains("--cluster-name"), "{}", stderr(&out));

    // Unsupported backend.
    let out = ctl(&ep, "c1", &["--store-backend", "consul", "status"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("consul"), "{}", stderr(&out));

    // Missing cluster name: clap's usage error.
    let out = Command::new(bin_path(STOLONCTL)).arg("status").output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--cluster-name"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_etcd_fails_fast_and_env_vars_work() {
    let port = stolon_tests::free_port();
    let started = std::time::Instant::now();
    let out = ctl(&format!("http://127.0.0.1:{port}"), "c1", &["status"]);
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(stderr(&out).contains(&port.to_string()), "{}", stderr(&out));

    // Every flag has an env var; the flag wins.
    let dir = TestDir::new("ctlenv");
    let etcd = Etcd::start_single(&dir).await;
    let out = Command::new(bin_path(STOLONCTL))
        .env("STOLONCTL_CLUSTER_NAME", "envc")
        .env("STOLONCTL_STORE_ENDPOINTS", etcd.endpoints())
        .arg("init")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stolon_tests::connect_store(&etcd.endpoints(), "envc").await.get_cluster_data().await.unwrap().is_some());
    let out = Command::new(bin_path(STOLONCTL))
        .env("STOLONCTL_CLUSTER_NAME", "envc")
        .env("STOLONCTL_STORE_ENDPOINTS", format!("http://127.0.0.1:{port}"))
        .args(["--store-endpoints", &etcd.endpoints(), "spec"])
        .output()
        .unwrap();
    assert!(out.status.success(), "flag must win over env: {}", stderr(&out));

    let help = Command::new(bin_path(STOLONCTL)).arg("--help").output().unwrap();
    assert!(stdout(&help).contains("STOLONCTL_STORE_ENDPOINTS"), "{}", stdout(&help));
}
