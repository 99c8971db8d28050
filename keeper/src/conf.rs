//! postgresql.conf, as owned by the keeper: pure rendering of `postgresql-stolon.conf`, the
//! `include` that makes postgresql.conf read it last, and `synchronous_standby_names`.
//!
//! The keeper writes its settings to `postgresql-stolon.conf` in PGDATA and makes sure the last
//! directive of postgresql.conf includes it, so whatever initdb (or an adopted existing cluster)
//! put in postgresql.conf stays as a base and the keeper's settings win. Inside the file, the
//! operator's `pgParameters` come first and the managed settings after them; a `pgParameters`
//! entry for a managed name is left out with a comment, so the managed value always wins.
//! WAL retention (`wal_keep_size`, `wal_keep_segments` before PostgreSQL 13) is managed with a
//! floor: `pgParameters` may raise it, never lower it below what a standby needs to catch up.
//! (ALTER SYSTEM's postgresql.auto.conf would be read after every other file and win: the keeper
//! makes it a symlink to /dev/null, as Stolon does, see `autoconf`.) Every value goes through
//! `quote::conf_value`.
//!
//! pg_basebackup and pg_rewind copy the source's config files; the keeper re-renders after them,
//! and the config hash (`config_hash`) tells the plan whether the files on disk are ours.

use crate::quote::conf_value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub const STOLON_CONF_FILE: &str = "postgresql-stolon.conf";
pub const INCLUDE_DIRECTIVE: &str = "include 'postgresql-stolon.conf'";
/// Listed in synchronous_standby_names when synchronous replication is on but fewer than
/// `minSynchronousStandbys` standbys are: commits wait instead of being acknowledged with fewer
/// copies than configured (as Stolon does).
pub const FAKE_STANDBY: &str = "stolonfakestandby";

/// Settings the keeper always sets itself; a `pgParameters` entry for one of them is ignored.
pub const MANAGED: &[&str] = &[
    "listen_addresses",
    "port",
    "unix_socket_directories",
    "unix_socket_permissions",
    "wal_level",
    "hot_standby",
    "max_wal_senders",
    "max_replication_slots",
    "wal_log_hints",
    "wal_keep_size",
    "wal_keep_segments",
    "synchronous_standby_names",
    "primary_conninfo",
    "primary_slot_name",
    "recovery_target_timeline",
];

/// What `postgresql-stolon.conf` is rendered from.
#[derive(Debug, Clone)]
pub struct ConfInput<'a> {
    pub pg_major: u32,
    pub listen_addresses: &'a str,
    pub port: u16,
    /// The unix socket directory: the keeper's data dir, private to its OS user.
    pub socket_dir: &'a str,
    pub max_wal_senders: u32,
    pub max_replication_slots: u32,
    pub synchronous_standby_names: &'a str,
    /// Empty on a master.
    pub primary_conninfo: &'a str,
    /// Empty on a master.
    pub primary_slot_name: &'a str,
    /// Further managed settings (a standby cluster's restore_command, recovery_min_apply_delay).
    pub extra_managed: &'a [(&'static str, String)],
    /// The cluster spec's pgParameters.
    pub pg_parameters: &'a BTreeMap<String, String>,
}

fn valid_param_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// The managed settings, in file order.
pub fn managed_settings(input: &ConfInput<'_>) -> Vec<(&'static str, String)> {
    let spec = |name: &str| input.pg_parameters.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    // wal_level: replica, or logical when the operator asked for it (logical includes replica).
    let wal_level = if spec("wal_level").is_some_and(|v| v.eq_ignore_ascii_case("logical")) { "logical" } else { "replica" };
    let (wal_keep_name, wal_keep_value) = wal_keep(input.pg_major, spec(wal_keep_floor(input.pg_major).0));
    let mut out = vec![
        ("listen_addresses", input.listen_addresses.to_string()),
        ("port", input.port.to_string()),
        ("unix_socket_directories", input.socket_dir.to_string()),
        // The superuser connects over the socket without a password: only our OS user may.
        ("unix_socket_permissions", "0700".to_string()),
        ("wal_level", wal_level.to_string()),
        ("hot_standby", "on".to_string()),
        ("wal_log_hints", "on".to_string()),
        (wal_keep_name, wal_keep_value),
        ("max_wal_senders", input.max_wal_senders.to_string()),
        ("max_replication_slots", input.max_replication_slots.to_string()),
        ("synchronous_standby_names", input.synchronous_standby_names.to_string()),
        ("primary_conninfo", input.primary_conninfo.to_string()),
        ("primary_slot_name", input.primary_slot_name.to_string()),
        ("recovery_target_timeline", "latest".to_string()),
    ];
    out.extend(input.extra_managed.iter().cloned());
    out
}

/// The least WAL kept for standbys, so one can catch up after a short disconnection or a
/// pg_rewind without a full copy: `(setting, minimum in its unit, minimum as written)`.
/// wal_keep_size (MB) from PostgreSQL 13, wal_keep_segments before.
fn wal_keep_floor(pg_major: u32) -> (&'static str, f64, &'static str) {
    if pg_major >= 13 {
        ("wal_keep_size", 128.0, "128MB")
    } else {
        ("wal_keep_segments", 8.0, "8")
    }
}

/// The managed WAL retention setting: the operator's value when it parses and keeps at least the
/// minimum (kept as written), else the minimum. A lower or unreadable value would let a standby
/// fall behind for good after a blip, which is what the keeper's value is there to prevent.
pub fn wal_keep(pg_major: u32, requested: Option<&str>) -> (&'static str, String) {
    let (name, min, min_text) = wal_keep_floor(pg_major);
    let parsed = requested.and_then(|v| if pg_major >= 13 { parse_size_mb(v) } else { v.trim().parse::<u32>().ok().map(f64::from) });
    match (requested, parsed) {
        (Some(v), Some(n)) if n >= min => (name, v.trim().to_string()),
        _ => (name, min_text.to_string()),
    }
}

/// A PostgreSQL size in MB (wal_keep_size's unit): `256`, `256MB`, `1 GB`, `1.5GB`, `512kB`.
/// Units are case-sensitive, as PostgreSQL reads them. `None` when PostgreSQL would refuse it.
pub fn parse_size_mb(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok().filter(|n: &f64| n.is_finite())?;
    let factor = match unit.trim_start() {
        "" | "MB" => 1.0,
        "B" => 1.0 / (1024.0 * 1024.0),
        "kB" => 1.0 / 1024.0,
        "GB" => 1024.0,
        "TB" => 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * factor)
}

/// Renders `postgresql-stolon.conf`.
pub fn render(input: &ConfInput<'_>) -> String {
    let managed = managed_settings(input);
    let is_managed = |name: &str| managed.iter().any(|(m, _)| m.eq_ignore_ascii_case(name));
    let mut out = String::new();
    out.push_str("# postgresql-stolon.conf: written by stolon-keeper. Do not edit: the keeper rewrites it.\n");
    out.push_str("# postgresql.conf includes this file last, so these settings win over it.\n");
    out.push_str("# Change settings with: stolonctl update --patch '{\"pgParameters\": {\"work_mem\": \"8MB\"}}'\n");

    out.push_str("\n# From the cluster spec's pgParameters:\n");
    for (name, value) in input.pg_parameters {
        if !valid_param_name(name) {
            out.push_str("# (a pgParameters entry with an invalid name was ignored)\n");
        } else if name.eq_ignore_ascii_case("wal_level") {
            let _ = writeln!(out, "# pgParameters.{name}: the keeper sets wal_level below (logical when asked, else replica)");
        } else if name.eq_ignore_ascii_case("wal_keep_size") || name.eq_ignore_ascii_case("wal_keep_segments") {
            let (setting, _, min) = wal_keep_floor(input.pg_major);
            if name.eq_ignore_ascii_case(setting) {
                let _ = writeln!(out, "# pgParameters.{name}: the keeper sets {setting} below (this value when it is at least {min})");
            } else {
                let _ = writeln!(out, "# pgParameters.{name} ignored: PostgreSQL {} uses {setting}, which the keeper sets below", input.pg_major);
            }
        } else if is_managed(name) {
            let _ = writeln!(out, "# pgParameters.{name} ignored: the keeper manages it");
        } else if value.contains(['\n', '\r', '\0']) {
            let _ = writeln!(out, "# pgParameters.{name} ignored: its value contains a line break or NUL");
        } else {
            let _ = writeln!(out, "{name} = {}", conf_value(value));
        }
    }

    out.push_str("\n# Managed by the keeper:\n");
    for (name, value) in &managed {
        let _ = writeln!(out, "{name} = {}", conf_value(value));
    }
    out
}

fn is_directive(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// Whether the last directive of postgresql.conf is our include.
pub fn include_is_last(postgresql_conf: &str) -> bool {
    postgresql_conf.lines().rev().find(|l| is_directive(l)).is_some_and(|l| l.trim() == INCLUDE_DIRECTIVE)
}

/// postgresql.conf with our include as its last directive (earlier copies removed).
pub fn with_include_last(postgresql_conf: &str) -> String {
    let mut out: String = postgresql_conf
        .lines()
        .filter(|l| l.trim() != INCLUDE_DIRECTIVE && l.trim() != "# Added by stolon-keeper: its settings win over the ones above.")
        .map(|l| format!("{l}\n"))
        .collect();
    while out.ends_with("\n\n") {
        out.pop();
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str("# Added by stolon-keeper: its settings win over the ones above.\n");
    out.push_str(INCLUDE_DIRECTIVE);
    out.push('\n');
    out
}

/// The value of synchronous_standby_names for a master: empty without synchronous replication;
/// else every listed standby must confirm (`N (a, b)` with N = their number), so any of them
/// can be elected without losing an acknowledged commit (safety rule 3). With fewer than
/// `min_standbys` (`minSynchronousStandbys`) listed, the fake standby is added: it never connects,
/// so commits wait until the sentinel lists enough real standbys (as Stolon does). With
/// `min_standbys` 0 and no standby listed the value is empty: the master commits alone.
pub fn synchronous_standby_names(enabled: bool, standby_db_uids: &[String], min_standbys: u16) -> String {
    if !enabled {
        return String::new();
    }
    let mut names: Vec<String> = standby_db_uids.iter().map(|u| format!("stolon_{u}")).collect();
    names.sort();
    names.dedup();
    if names.len() < usize::from(min_standbys) {
        names.push(FAKE_STANDBY.to_string());
    }
    if names.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = names
        .iter()
        .map(|n| if n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') { n.clone() } else { format!("\"{}\"", n.replace('"', "")) })
        .collect();
    format!("{} ({})", quoted.len(), quoted.join(", "))
}

/// FNV-1a over the files the keeper owns, so the plan can tell whether disk (or the running
/// postgres) has the wanted configuration. Stable across processes and versions, unlike std's
/// hasher.
pub fn config_hash(stolon_conf: &str, pg_hba: &str, include_last: bool) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let parts: [&[u8]; 5] = [stolon_conf.as_bytes(), b"\0", pg_hba.as_bytes(), b"\0", if include_last { b"1" } else { b"0" }];
    for part in parts {
        for byte in part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
#[path = "conf_tests.rs"]
mod tests;
