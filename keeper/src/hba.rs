//! pg_hba.conf, as owned by the keeper: a pure rendering from the keeper's flags and clusterdata.
//!
//! Order matters (the first matching line wins):
//! 1. `local` trust for the superuser: the keeper's own connections over the unix socket, which
//!    lives in the keeper's data dir (mode 0700), so only the keeper's OS user can reach it;
//! 2. the superuser (for pg_rewind from other keepers) and the replication user, per the spec's
//!    `defaultSUReplAccessMode`: `all` admits any address, `strict` only the keepers' addresses
//!    found in clusterdata;
//! 3. the spec's `pgHBA` lines; when `pgHBA` is null, Stolon's default of md5 for everyone from
//!    anywhere; when it is `[]`, nothing more.
//!
//! The *restricted* file (Stolon's waitSyncStandbysSynced) stops after 2: a master started in
//! synchronous mode admits no client until its synchronous standbys are in sync. The superuser's
//! remote entries stay, as in Stolon: a standby that must pg_rewind from this master before it
//! can stream (and become in sync) needs them.

use crate::args::AuthMethod;
use crate::quote::hba_user;
use clusterview::spec::SuReplAccessMode;
use std::fmt::Write as _;
use std::net::IpAddr;

/// What pg_hba.conf is rendered from.
#[derive(Debug, Clone)]
pub struct HbaInput<'a> {
    pub su_username: &'a str,
    pub repl_username: &'a str,
    pub su_auth: AuthMethod,
    pub repl_auth: AuthMethod,
    pub access: SuReplAccessMode,
    /// Addresses of the cluster's keepers (dbs' listenAddress in clusterdata), for `strict`.
    pub keeper_addresses: &'a [String],
    /// The spec's pgHBA.
    pub user_lines: Option<&'a [String]>,
    /// Keep clients out: only the keeper's and the replication entries (see `render`).
    pub restricted: bool,
}

/// An address as a pg_hba address field: an IP gets a host mask, a name stays a name.
pub fn address_field(address: &str) -> String {
    let a = address.trim().trim_start_matches('[').trim_end_matches(']');
    if a.contains('/') {
        return a.to_string();
    }
    match a.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => format!("{ip}/32"),
        Ok(IpAddr::V6(ip)) => format!("{ip}/128"),
        Err(_) => a.to_string(),
    }
}

fn line(out: &mut String, kind: &str, db: &str, user: &str, address: &str, method: &str) {
    let _ = if address.is_empty() {
        writeln!(out, "{kind:<7} {db:<12} {user:<16} {method}")
    } else {
        writeln!(out, "{kind:<7} {db:<12} {user:<16} {address:<24} {method}")
    };
}

/// Renders pg_hba.conf.
pub fn render(input: &HbaInput<'_>) -> String {
    let su = hba_user(input.su_username);
    let repl = hba_user(input.repl_username);
    let mut out = String::new();
    out.push_str("# pg_hba.conf: written by stolon-keeper. Do not edit: the keeper rewrites it.\n");
    out.push_str("# Add entries with: stolonctl update --patch '{\"pgHBA\": [\"host all all 10.0.0.0/8 md5\"]}'\n");
    out.push_str("\n# The keeper's own superuser connections over its private unix socket.\n");
    // `all` (not `postgres`): it also admits the keeper's `replication=database` connection
    // for IDENTIFY_SYSTEM (`identify`), which pg_hba matches like a normal connection.
    line(&mut out, "local", "all", &su, "", "trust");

    let addresses: Vec<String> = match input.access {
        SuReplAccessMode::All => vec!["0.0.0.0/0".to_string(), "::0/0".to_string()],
        SuReplAccessMode::Strict => {
            let mut a: Vec<String> = input.keeper_addresses.iter().filter(|a| !a.trim().is_empty() && !a.contains(char::is_whitespace)).map(|a| address_field(a)).collect();
            a.sort();
            a.dedup();
            a
        }
    };
    let mode = match input.access {
        SuReplAccessMode::All => "all: from any address",
        SuReplAccessMode::Strict => "strict: only from the keepers' addresses",
    };
    let _ = writeln!(out, "\n# Superuser (pg_rewind) and replication user (defaultSUReplAccessMode {mode}).");
    for address in &addresses {
        line(&mut out, "host", "all", &su, address, input.su_auth.as_hba());
    }
    for address in &addresses {
        line(&mut out, "host", "replication", &repl, address, input.repl_auth.as_hba());
    }

    if input.restricted {
        out.push_str("\n# Restricted: synchronous replication is on and this master was (re)started. Clients are\n");
        out.push_str("# kept out until its synchronous standbys are in sync again, so that no transaction\n");
        out.push_str("# committed before the restart is read before a standby holds it. The keeper then\n");
        out.push_str("# writes the full file (with pgHBA) and reloads.\n");
        return out;
    }
    match input.user_lines {
        None => {
            out.push_str("\n# pgHBA is not set: everyone with a password, from any address (Stolon's default).\n");
            line(&mut out, "host", "all", "all", "0.0.0.0/0", "md5");
            line(&mut out, "host", "all", "all", "::0/0", "md5");
        }
        Some(lines) => {
            out.push_str("\n# From the cluster spec's pgHBA.\n");
            for l in lines {
                // The spec's validation refuses line breaks; never let one through regardless.
                if l.contains(['\n', '\r', '\0']) || l.trim().is_empty() {
                    out.push_str("# (a pgHBA entry with a line break or nothing in it was ignored)\n");
                } else {
                    out.push_str(l.trim());
                    out.push('\n');
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::assert_golden;

    fn base<'a>(addrs: &'a [String], user: Option<&'a [String]>, access: SuReplAccessMode) -> HbaInput<'a> {
        HbaInput {
            su_username: "postgres",
            repl_username: "repl",
            su_auth: AuthMethod::Md5,
            repl_auth: AuthMethod::ScramSha256,
            access,
            keeper_addresses: addrs,
            user_lines: user,
            restricted: false,
        }
    }

    #[test]
    fn golden_default_all() {
        assert_golden("hba_all_default.conf", &render(&base(&[], None, SuReplAccessMode::All)));
    }

    #[test]
    fn golden_strict_with_user_lines() {
        let addrs = vec!["10.0.0.2".to_string(), "10.0.0.1".to_string(), "fe80::1".to_string(), "db3.example".to_string(), "10.0.0.1".to_string()];
        let user = vec!["host all app 10.1.0.0/16 scram-sha-256".to_string(), "bad\nline".to_string()];
        assert_golden("hba_strict.conf", &render(&base(&addrs, Some(&user), SuReplAccessMode::Strict)));
    }

    /// Safety review §14c: a sync master restarted keeps clients out until its synchronous
    /// standbys are in sync again.
    #[test]
    fn golden_restricted_keeps_clients_out() {
        let user = vec!["host all app 10.1.0.0/16 scram-sha-256".to_string()];
        let text = render(&HbaInput { restricted: true, ..base(&[], Some(&user), SuReplAccessMode::All) });
        assert_golden("hba_restricted.conf", &text);
        assert!(!text.contains("app") && !text.contains("host    all          all"), "{text}");
        let text = render(&HbaInput { restricted: true, ..base(&[], None, SuReplAccessMode::All) });
        assert!(!text.contains("host    all          all"), "pgHBA unset: no default entry either\n{text}");
        assert!(text.contains("local   all          \"postgres\"       trust") && text.contains("host    replication  \"repl\""), "{text}");
    }

    #[test]
    fn empty_pg_hba_adds_nothing_more() {
        let text = render(&base(&[], Some(&[]), SuReplAccessMode::All));
        assert!(!text.contains("host    all          all"), "{text}");
        assert!(text.contains("host    replication  \"repl\""), "{text}");
    }

    #[test]
    fn addresses() {
        assert_eq!(address_field("10.0.0.1"), "10.0.0.1/32");
        assert_eq!(address_field("[::1]"), "::1/128");
        assert_eq!(address_field("10.0.0.0/8"), "10.0.0.0/8");
        assert_eq!(address_field("db1.local"), "db1.local");
    }

    #[test]
    fn trust_method_and_quoted_users() {
        let mut i = base(&[], Some(&[]), SuReplAccessMode::All);
        i.su_username = "all";
        i.repl_auth = AuthMethod::Trust;
        let text = render(&i);
        assert!(text.contains("local   all          \"all\"            trust"), "{text}");
        assert!(text.contains("\"repl\"           0.0.0.0/0                trust"), "{text}");
    }
}
