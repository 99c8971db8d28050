//! Table tests of cluster spec parsing, defaults and validation.

use super::*;

fn field_of(err: &SpecError) -> String {
    match err {
        SpecError::Parse { path, .. } => path.clone(),
        SpecError::Invalid { field, .. } => field.to_string(),
    }
}

#[test]
fn minimal_spec_is_valid_and_defaults_apply() {
    let spec = ClusterSpec::parse_valid(r#"{"initMode":"new"}"#).unwrap();
    assert_eq!(spec.init_mode, Some(InitMode::New));
    assert_eq!(spec.sleep_interval, None);
    assert_eq!(spec.sleep_interval(), Duration::from_secs(1));
    assert_eq!(spec.fail_interval(), Duration::from_secs(4));
    assert_eq!(spec.max_standby_lag(), 1024 * 1024);
    assert!(spec.use_pgrewind());
    // Stolon's default: no limit on a standby's sync (a large basebackup must not be killed and
    // restarted forever).
    assert_eq!(spec.sync_timeout(), Duration::ZERO);
    let full = spec.with_defaults();
    assert_eq!(full.proxy_timeout, Some(Duration::from_secs(4)));
    assert_eq!(full.role, Some(ClusterRole::Master));
    full.validate().unwrap();
}

#[test]
fn stolon_example_spec_parses() {
    let json = r#"{
        "sleepInterval": "5s", "requestTimeout": "10s", "failInterval": "20s",
        "convergenceTimeout": "30s", "initTimeout": "5m", "syncTimeout": "30m",
        "dbWaitReadyTimeout": "1m", "deadKeeperRemovalInterval": "48h",
        "proxyCheckInterval": "5s", "proxyTimeout": "15s", "maxStandbys": 20,
        "maxStandbysPerSender": 3, "maxStandbyLag": 1048576, "synchronousReplication": true,
        "minSynchronousStandbys": 1, "maxSynchronousStandbys": 2, "additionalWalSenders": 5,
        "additionalMasterReplicationSlots": ["backup_slot"], "usePgrewind": false,
        "initMode": "new", "mergePgParameters": true, "role": "master",
        "newConfig": {"locale": "C.UTF-8", "encoding": "UTF8", "dataChecksums": true},
        "defaultSUReplAccessMode": "strict",
        "pgParameters": {"max_connections": "200", "log_min_duration_statement": "1s"},
        "pgHBA": ["host all all 10.0.0.0/8 md5"], "automaticPgRestart": true
    }"#;
    let spec = ClusterSpec::parse_valid(json).unwrap();
    assert_eq!(spec.fail_interval(), Duration::from_secs(20));
    assert_eq!(spec.init_timeout(), Duration::from_secs(300));
    assert_eq!(spec.default_su_repl_access_mode(), SuReplAccessMode::Strict);
    assert_eq!(spec.new_config.as_ref().unwrap().data_checksums, Some(true));
    assert!(!spec.use_pgrewind());
    // Round trip: serialize and parse back to the same value.
    let text = serde_json::to_string(&spec).unwrap();
    assert_eq!(ClusterSpec::parse(&text).unwrap(), spec);
    assert!(text.contains("\"failInterval\":\"20s\""), "{text}");
    assert!(text.contains("\"pgHBA\""), "{text}");
    assert!(text.contains("\"defaultSUReplAccessMode\""), "{text}");
}

#[test]
fn pg_hba_null_and_empty_are_distinct() {
    let null = ClusterSpec::parse(r#"{"initMode":"new","pgHBA":null}"#).unwrap();
    let empty = ClusterSpec::parse(r#"{"initMode":"new","pgHBA":[]}"#).unwrap();
    assert_eq!(null.pg_hba, None);
    assert_eq!(empty.pg_hba, Some(vec![]));
    let text = serde_json::to_string(&empty).unwrap();
    assert_eq!(ClusterSpec::parse(&text).unwrap().pg_hba, Some(vec![]));
}

#[test]
fn bad_specs_are_rejected_naming_the_field() {
    let cases: &[(&str, &str)] = &[
        (r#"{"initMode":"new","failInterval":"-5s"}"#, "failInterval"),
        (r#"{"initMode":"new","failInterval":"5"}"#, "failInterval"),
        (r#"{"initMode":"new","failInterval":5}"#, "failInterval"),
        (r#"{"initMode":"new","maxStandbys":-1}"#, "maxStandbys"),
        (r#"{"initMode":"new","maxStandbyLag":"1MB"}"#, "maxStandbyLag"),
        (r#"{"initMode":"neu"}"#, "initMode"),
        (r#"{"initMode":"new","role":"leader"}"#, "role"),
        (r#"{"initMode":"new","synchronousReplication":"yes"}"#, "synchronousReplication"),
        (r#"{"initMode":"new","sleepInterval":"0s"}"#, "sleepInterval"),
        (r#"{"initMode":"new","proxyTimeout":"0s"}"#, "proxyTimeout"),
        (r#"{"initMode":"new","proxyCheckInterval":"5s","proxyTimeout":"5s"}"#, "proxyCheckInterval"),
        (r#"{"initMode":"new","proxyCheckInterval":"10s"}"#, "proxyCheckInterval"),
        (r#"{"initMode":"new","sleepInterval":"5s"}"#, "failInterval"),
        (r#"{"initMode":"new","failInterval":"1s"}"#, "failInterval"),
        (r#"{"initMode":"new","maxStandbys":0}"#, "maxStandbys"),
        (r#"{"initMode":"new","maxStandbysPerSender":0}"#, "maxStandbysPerSender"),
        (r#"{"initMode":"new","minSynchronousStandbys":3,"maxSynchronousStandbys":2}"#, "maxSynchronousStandbys"),
        (r#"{"initMode":"new","maxSynchronousStandbys":0}"#, "maxSynchronousStandbys"),
        (r#"{}"#, "initMode"),
        (r#"{"initMode":"existing"}"#, "existingConfig"),
        (r#"{"initMode":"existing","existingConfig":{"keeperUID":""}}"#, "existingConfig"),
        (r#"{"initMode":"pitr"}"#, "pitrConfig"),
        (r#"{"initMode":"new","role":"standby"}"#, "standbyConfig"),
        (r#"{"initMode":"new","additionalMasterReplicationSlots":["Bad-Name"]}"#, "additionalMasterReplicationSlots"),
        (r#"{"initMode":"new","additionalMasterReplicationSlots":["stolon_x"]}"#, "additionalMasterReplicationSlots"),
        (r#"{"initMode":"new","pgParameters":{"work mem":"4MB"}}"#, "pgParameters"),
        (r#"{"initMode":"new","pgParameters":{"work_mem":"4MB\nfsync=off"}}"#, "pgParameters"),
        (r#"{"initMode":"new","pgHBA":[""]}"#, "pgHBA"),
        (r#"{"initMode":"new","pgParameters":{"work_mem":4}}"#, "pgParameters.work_mem"),
        (r#"[1,2]"#, "(top level)"),
        (r#"{"initMode":"new""#, "(top level)"),
    ];
    for (json, want_field) in cases {
        let err = ClusterSpec::parse_valid(json).expect_err(json);
        assert_eq!(&field_of(&err), want_field, "spec {json}: {err}");
        let message = err.to_string();
        assert!(message.contains(want_field), "message {message:?} must name {want_field}");
    }
}

/// A field from a newer version (or a typo) is tolerated, kept, and named by `unknown_fields`,
/// so an older component reading a newer writer's spec neither fails nor drops the setting.
#[test]
fn unknown_fields_are_tolerated_kept_and_named() {
    let json = r#"{"initMode":"new","bogus":1,"failInterval":"10s","newerThing":{"a":[1]},"newConfig":{"locale":"C","icuRules":"x"}}"#;
    let spec = ClusterSpec::parse_valid(json).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(spec.fail_interval(), std::time::Duration::from_secs(10));
    assert_eq!(spec.new_config.as_ref().and_then(|c| c.locale.as_deref()), Some("C"));
    assert_eq!(spec.unknown_fields(), vec!["bogus".to_string(), "newConfig.icuRules".into(), "newerThing".into()]);
    // Written back as they came, so a newer component still finds its setting after an older
    // sentinel rewrote clusterdata.
    let back: serde_json::Value = serde_json::to_value(&spec).unwrap();
    assert_eq!(back["bogus"], serde_json::json!(1));
    assert_eq!(back["newerThing"], serde_json::json!({"a":[1]}));
    assert_eq!(back["newConfig"]["icuRules"], serde_json::json!("x"));
    assert_eq!(ClusterSpec::parse(&back.to_string()).unwrap(), spec);
    // A known field with a wrong type is still an error naming it.
    let err = ClusterSpec::parse(r#"{"initMode":"new","bogus":1,"failInterval":"-1s"}"#).unwrap_err();
    assert_eq!(field_of(&err), "failInterval", "{err}");
    assert!(ClusterSpec::parse_valid(r#"{"initMode":"new"}"#).unwrap().unknown_fields().is_empty());
}

#[test]
fn valid_variants_pass() {
    for json in [
        r#"{"initMode":"existing","existingConfig":{"keeperUID":"keeper0"}}"#,
        r#"{"initMode":"pitr","pitrConfig":{"dataRestoreCommand":"cp -r /backup %d"}}"#,
        r#"{"initMode":"pitr","role":"standby","pitrConfig":{"dataRestoreCommand":"x"},
            "standbyConfig":{"standbySettings":{"primaryConninfo":"host=10.0.0.1"}}}"#,
        r#"{"initMode":"new","syncTimeout":"0s"}"#,
        r#"{"initMode":"new","minSynchronousStandbys":2,"maxSynchronousStandbys":2}"#,
        // Stolon #841: 0 lets a master without any synchronous standby commit alone.
        r#"{"initMode":"new","synchronousReplication":true,"minSynchronousStandbys":0}"#,
    ] {
        ClusterSpec::parse_valid(json).unwrap_or_else(|e| panic!("{json}: {e}"));
    }
}

#[test]
fn patch_merges_and_resets() {
    let spec = ClusterSpec::parse_valid(r#"{"initMode":"new","failInterval":"10s","pgParameters":{"a":"1"}}"#).unwrap();
    let patched = spec.patched(r#"{"failInterval":null,"pgParameters":{"b":"2"},"maxStandbys":5}"#).unwrap();
    assert_eq!(patched.fail_interval, None);
    assert_eq!(patched.max_standbys, Some(5));
    let params = patched.pg_parameters();
    assert_eq!(params.get("a").map(String::as_str), Some("1"));
    assert_eq!(params.get("b").map(String::as_str), Some("2"));
    assert_eq!(spec.patched(r#"{"bogus":1}"#).unwrap().unknown_fields(), vec!["bogus".to_string()]);
    assert!(matches!(spec.patched(r#"{"maxStandbys":"x"}"#), Err(SpecError::Parse { .. })));
}

#[test]
fn defaults_spec_has_every_defaulted_field() {
    let text = serde_json::to_value(ClusterSpec::defaults()).unwrap();
    for field in [
        "sleepInterval", "requestTimeout", "failInterval", "convergenceTimeout", "initTimeout",
        "syncTimeout", "dbWaitReadyTimeout", "deadKeeperRemovalInterval", "proxyCheckInterval",
        "proxyTimeout", "maxStandbys", "maxStandbysPerSender", "maxStandbyLag",
        "synchronousReplication", "minSynchronousStandbys", "maxSynchronousStandbys",
        "additionalWalSenders", "additionalMasterReplicationSlots", "usePgrewind",
        "mergePgParameters", "role", "defaultSUReplAccessMode", "pgParameters", "automaticPgRestart",
    ] {
        assert!(text.get(field).is_some(), "defaults lack {field}");
    }
}
