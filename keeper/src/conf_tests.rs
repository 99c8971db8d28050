//! Tests of `conf`: golden renderings and the include / synchronous_standby_names helpers.

use super::*;
use crate::golden::assert_golden;

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn input<'a>(params: &'a BTreeMap<String, String>, conninfo: &'a str, slot: &'a str, ssn: &'a str) -> ConfInput<'a> {
    ConfInput {
        pg_major: 15,
        listen_addresses: "10.0.0.1",
        port: 5432,
        socket_dir: "/var/lib/stolon/keeper1",
        max_wal_senders: 45,
        max_replication_slots: 20,
        synchronous_standby_names: ssn,
        primary_conninfo: conninfo,
        primary_slot_name: slot,
        extra_managed: &[],
        pg_parameters: params,
    }
}

#[test]
fn golden_master_with_parameters() {
    let p = params(&[
        ("work_mem", "8MB"),
        ("port", "6000"),
        ("log_line_prefix", "%m [%p] it's "),
        ("bad name", "x"),
        ("wal_level", "logical"),
        ("wal_keep_size", "16MB"),
        ("evil", "x'\ninclude '/etc/passwd"),
    ]);
    let ssn = synchronous_standby_names(true, &["b2".to_string(), "a1".to_string()], 1);
    assert_golden("master.conf", &render(&input(&p, "", "", &ssn)));
}

#[test]
fn golden_standby() {
    let p = params(&[("wal_keep_size", "1GB")]);
    let conninfo = crate::quote::conninfo(&[
        ("host", "10.0.0.2"),
        ("port", "5432"),
        ("user", "repl"),
        ("application_name", "stolon_db2"),
        ("passfile", "/var/lib/stolon/keeper1/pgpass"),
    ]);
    assert_golden("standby.conf", &render(&input(&p, &conninfo, "stolon_db2", "")));
}

#[test]
fn managed_values_win_over_pg_parameters() {
    let p = params(&[("PORT", "1"), ("listen_addresses", "*"), ("primary_conninfo", "host=evil")]);
    let text = render(&input(&p, "", "", ""));
    assert!(text.contains("port = '5432'"));
    assert!(!text.contains("port = '1'") && !text.contains("PORT = '1'"));
    assert!(!text.contains("host=evil"));
    assert!(text.contains("listen_addresses = '10.0.0.1'"));
    assert!(text.contains("wal_keep_size = '128MB'"));
    let mut old = input(&p, "", "", "");
    old.pg_major = 12;
    assert!(render(&old).contains("wal_keep_segments = '8'"));
}

#[test]
fn wal_retention_is_managed_with_a_floor() {
    // Lowering it (or an unreadable value) cannot starve standbys; raising it is honoured, as written.
    let rows: &[(u32, Option<&str>, (&str, &str))] = &[
        (15, None, ("wal_keep_size", "128MB")),
        (15, Some("0"), ("wal_keep_size", "128MB")),
        (15, Some("16MB"), ("wal_keep_size", "128MB")),
        (15, Some("131071kB"), ("wal_keep_size", "128MB")),
        (15, Some("128"), ("wal_keep_size", "128")),
        (15, Some("1GB"), ("wal_keep_size", "1GB")),
        (15, Some(" 2 GB "), ("wal_keep_size", "2 GB")),
        (15, Some("0.5GB"), ("wal_keep_size", "0.5GB")),
        (15, Some("1gb"), ("wal_keep_size", "128MB")),
        (15, Some("-1"), ("wal_keep_size", "128MB")),
        (15, Some("lots"), ("wal_keep_size", "128MB")),
        (13, Some("256MB"), ("wal_keep_size", "256MB")),
        (12, None, ("wal_keep_segments", "8")),
        (12, Some("4"), ("wal_keep_segments", "8")),
        (12, Some("64"), ("wal_keep_segments", "64")),
        (12, Some("1GB"), ("wal_keep_segments", "8")),
    ];
    for &(major, requested, (name, value)) in rows {
        assert_eq!(wal_keep(major, requested), (name, value.to_string()), "PostgreSQL {major}, pgParameters {requested:?}");
    }
}

#[test]
fn wal_retention_in_the_rendered_file() {
    for (major, key, given, want) in [
        (15, "wal_keep_size", "1MB", "wal_keep_size = '128MB'"),
        (15, "WAL_KEEP_SIZE", "4GB", "wal_keep_size = '4GB'"),
        (15, "wal_keep_segments", "1000", "wal_keep_size = '128MB'"),
        (12, "wal_keep_size", "4GB", "wal_keep_segments = '8'"),
    ] {
        let p = params(&[(key, given)]);
        let mut i = input(&p, "", "", "");
        i.pg_major = major;
        let text = render(&i);
        assert!(text.contains(want), "{major} {key}={given}:\n{text}");
        // The operator's line never appears as a setting of its own, only as a comment.
        assert_eq!(text.lines().filter(|l| l.to_ascii_lowercase().starts_with("wal_keep")).count(), 1, "{text}");
    }
}

#[test]
fn sizes() {
    let rows: &[(&str, Option<f64>)] =
        &[("128", Some(128.0)), ("128MB", Some(128.0)), ("1 GB", Some(1024.0)), ("1TB", Some(1_048_576.0)), ("512kB", Some(0.5)), ("1048576B", Some(1.0)), ("1Gb", None), ("", None), ("MB", None), ("1.2.3MB", None)];
    for &(text, want) in rows {
        assert_eq!(parse_size_mb(text), want, "{text:?}");
    }
}

#[test]
fn include_goes_last_once() {
    let initdb = "max_connections = 100\n#comment\n";
    assert!(!include_is_last(initdb));
    let fixed = with_include_last(initdb);
    assert!(include_is_last(&fixed));
    assert_eq!(fixed.matches(INCLUDE_DIRECTIVE).count(), 1);
    // Idempotent, and a directive appended after it (pg_basebackup from an edited source) moves it.
    assert_eq!(with_include_last(&fixed), fixed);
    let edited = format!("{fixed}work_mem = 1MB\n");
    assert!(!include_is_last(&edited));
    let refixed = with_include_last(&edited);
    assert!(include_is_last(&refixed));
    assert_eq!(refixed.matches(INCLUDE_DIRECTIVE).count(), 1);
    assert!(refixed.contains("work_mem = 1MB"));
    assert!(include_is_last(&with_include_last("")));
    assert!(include_is_last(&format!("{fixed}\n# trailing comment\n")));
}

#[test]
fn synchronous_standby_names_values() {
    assert_eq!(synchronous_standby_names(false, &["a".into()], 1), "");
    assert_eq!(synchronous_standby_names(true, &[], 1), "1 (stolonfakestandby)");
    assert_eq!(synchronous_standby_names(true, &[], 0), "", "minSynchronousStandbys 0: commit alone");
    assert_eq!(synchronous_standby_names(true, &["a".into()], 0), "1 (stolon_a)");
    assert_eq!(synchronous_standby_names(true, &["a".into()], 2), "2 (stolon_a, stolonfakestandby)");
    assert_eq!(synchronous_standby_names(true, &["b".into(), "a".into(), "a".into()], 1), "2 (stolon_a, stolon_b)");
    assert_eq!(synchronous_standby_names(true, &["b".into(), "a".into(), "a".into()], 2), "2 (stolon_a, stolon_b)");
    assert_eq!(synchronous_standby_names(true, &["X-1".into()], 1), "1 (\"stolon_X-1\")");
}

#[test]
fn config_hash_sees_every_part() {
    let h = config_hash("a", "b", true);
    assert_eq!(h, config_hash("a", "b", true));
    assert_ne!(h, config_hash("a", "b", false));
    assert_ne!(h, config_hash("ab", "", true));
    assert_ne!(h, config_hash("a", "c", true));
}
