//! The keeper's flags (Stolon's names; every one also settable as `STKEEPER_<FLAG>`), and the
//! checks clap cannot express: a password for every method that needs one, distinct superuser and
//! replication users, names and passwords that can be written safely into pg_hba.conf and pgpass.
//!
//! Secrets are held in `Secret`, whose `Debug` never shows the value, so printing the parsed
//! flags (or an error holding them) cannot leak a password into the log.

use crate::error::StartupError;
use crate::quote;
use clap::{ArgAction, Parser, ValueEnum};
use std::path::{Path, PathBuf};
use stolon_common::{CommonArgs, MetricsArgs};

/// Keeper of one PostgreSQL instance of a stolon-rs cluster: runs postgres as its child and brings
/// it to what the cluster data in the store says (initdb, basebackup, rewind, promote, follow).
#[derive(Parser, Debug)]
#[command(name = "stolon-keeper", version, about, long_about = None)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Keeper uid (letters, digits, `_` and `-`). Default: generated at the first start and kept in
    /// <data-dir>/keeperstate.json; a later --uid must then match it.
    #[arg(long, value_name = "UID")]
    pub uid: Option<String>,
    /// The keeper's own directory: PostgreSQL data in <data-dir>/postgres, keeper state, lock,
    /// pgpass and the postgres unix socket (required).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Address(es) postgres listens on (its listen_addresses). Default "localhost", which only
    /// suits a single host: set the host's address for a real cluster.
    #[arg(long, default_value = "localhost", value_name = "ADDRESS")]
    pub pg_listen_address: String,
    /// Port postgres listens on.
    #[arg(long, default_value_t = 5432, value_name = "PORT")]
    pub pg_port: u16,
    /// Address other keepers and proxies use to reach this postgres. Default: --pg-listen-address
    /// (required when that is a wildcard such as "*" or "0.0.0.0").
    #[arg(long, value_name = "ADDRESS")]
    pub pg_advertise_address: Option<String>,
    /// Port other keepers and proxies use to reach this postgres. Default: --pg-port.
    #[arg(long, value_name = "PORT")]
    pub pg_advertise_port: Option<u16>,
    /// Directory of the PostgreSQL programs (postgres, initdb, pg_ctl, pg_basebackup, pg_rewind,
    /// pg_controldata). Default: the directory `postgres` found in PATH really lives in (symlinks
    /// resolved) when it holds them all, else the newest /usr/lib/postgresql/<version>/bin
    /// (Debian and Ubuntu packages).
    #[arg(long, value_name = "DIR")]
    pub pg_bin_path: Option<PathBuf>,
    /// PostgreSQL superuser name. Default: the name of the OS user running the keeper.
    #[arg(long, value_name = "NAME")]
    pub pg_su_username: Option<String>,
    /// Superuser password. Prefer --pg-su-passwordfile or the environment variable: a flag value
    /// is visible to every local user in the process list.
    #[arg(long, value_name = "PASSWORD", conflicts_with = "pg_su_passwordfile", hide_env_values = true)]
    pub pg_su_password: Option<String>,
    /// File holding the superuser password (trailing newline ignored).
    #[arg(long, value_name = "FILE")]
    pub pg_su_passwordfile: Option<PathBuf>,
    /// Replication user name (required); the keeper creates this role on the master.
    #[arg(long, value_name = "NAME")]
    pub pg_repl_username: String,
    /// Replication user password. Prefer --pg-repl-passwordfile or the environment variable.
    #[arg(long, value_name = "PASSWORD", conflicts_with = "pg_repl_passwordfile", hide_env_values = true)]
    pub pg_repl_password: Option<String>,
    /// File holding the replication user password (trailing newline ignored).
    #[arg(long, value_name = "FILE")]
    pub pg_repl_passwordfile: Option<PathBuf>,
    /// Authentication method of remote superuser connections in pg_hba.conf.
    #[arg(long, value_enum, default_value = "md5", value_name = "METHOD")]
    pub pg_su_auth_method: AuthMethod,
    /// Authentication method of replication connections in pg_hba.conf.
    #[arg(long, value_enum, default_value = "md5", value_name = "METHOD")]
    pub pg_repl_auth_method: AuthMethod,
    /// Whether this keeper's db may be elected master (--can-be-master=false to forbid).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub can_be_master: bool,
    /// Whether this keeper's db may be a synchronous standby (--can-be-synchronous-replica=false
    /// to forbid).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub can_be_synchronous_replica: bool,
    /// Allow initdb (initMode new), or a copy from another cluster, over a data dir that holds
    /// data: PostgreSQL data (PG_VERSION), or a dbstate.json naming a db of another cluster.
    /// Without it the keeper refuses and waits, reporting what it found: a cluster data that
    /// disappeared from the store and was created again must not wipe the old databases. Give it
    /// only to re-initialize a cluster on purpose, and remove it afterwards.
    #[arg(long, default_value_t = false, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub allow_reinit: bool,
}

/// pg_hba.conf authentication methods the keeper writes for remote superuser and replication
/// connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMethod {
    /// md5 (also accepts SCRAM-stored passwords, using SCRAM).
    Md5,
    /// scram-sha-256.
    #[value(name = "scram-sha-256")]
    ScramSha256,
    /// trust: no password at all; only for closed networks and tests.
    Trust,
}

impl AuthMethod {
    /// The method as written in pg_hba.conf.
    pub fn as_hba(self) -> &'static str {
        match self {
            AuthMethod::Md5 => "md5",
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Trust => "trust",
        }
    }
}

/// A password. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    /// The clear text, only for writing the 0600 files and hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads a password from its flag (or env var, which clap folds into the flag) or its file.
pub fn read_secret(
    value: Option<&String>,
    file: Option<&Path>,
    flag: &'static str,
) -> Result<Option<Secret>, StartupError> {
    let text = match (value, file) {
        (Some(v), _) => v.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|source| StartupError::PasswordFile { flag, path: path.to_path_buf(), source })?,
        (None, None) => return Ok(None),
    };
    let text = text.trim_end_matches(['\n', '\r']).to_string();
    if !quote::valid_password(&text) {
        return Err(StartupError::Flag {
            flag,
            reason: "the password contains a line break or NUL, which pgpass files cannot hold".into(),
        });
    }
    Ok(Some(Secret::new(text)))
}

/// Checks a password is present when the method needs one.
pub fn require_password(
    method: AuthMethod,
    password: &Option<Secret>,
    user_kind: &'static str,
    flags: &'static str,
) -> Result<(), StartupError> {
    if method != AuthMethod::Trust && password.as_ref().map(|p| p.expose().is_empty()).unwrap_or(true) {
        return Err(StartupError::Flag {
            flag: flags,
            reason: format!("the {user_kind} needs a password with auth method {}: set one of {flags}, or use auth method trust on a closed network", method.as_hba()),
        });
    }
    Ok(())
}

/// Checks a keeper uid: it becomes part of etcd keys, so no `/` and nothing exotic.
pub fn valid_keeper_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 63 && uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A listen address other hosts cannot use to reach us.
pub fn is_wildcard_address(address: &str) -> bool {
    matches!(address.trim(), "*" | "0.0.0.0" | "::" | "[::]") || address.contains(',')
}

#[cfg(test)]
mod tests {
    use super::*;
    use stolon_common::cli::{try_parse_from_with_env_prefix, with_env_prefix};
    use clap::CommandFactory;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec!["stolon-keeper", "--cluster-name", "c", "--data-dir", "/d", "--pg-repl-username", "repl"];
        argv.extend_from_slice(extra);
        try_parse_from_with_env_prefix::<Args, _, _>("STKEEPERTEST", argv)
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.pg_listen_address, "localhost");
        assert_eq!(a.pg_port, 5432);
        assert!(a.can_be_master && a.can_be_synchronous_replica);
        assert!(!a.allow_reinit, "re-initialization over existing data must be asked for");
        assert!(parse(&["--allow-reinit"]).unwrap().allow_reinit);
        assert_eq!(a.pg_su_auth_method, AuthMethod::Md5);
        assert_eq!(a.pg_repl_auth_method, AuthMethod::Md5);
    }

    #[test]
    fn bools_and_methods() {
        let a = parse(&["--can-be-master=false", "--can-be-synchronous-replica", "false", "--pg-repl-auth-method", "scram-sha-256"]).unwrap();
        assert!(!a.can_be_master);
        assert!(!a.can_be_synchronous_replica);
        assert_eq!(a.pg_repl_auth_method, AuthMethod::ScramSha256);
        assert!(parse(&["--can-be-master"]).unwrap().can_be_master);
        assert!(parse(&["--pg-su-auth-method", "password"]).is_err());
    }

    #[test]
    fn password_and_file_conflict() {
        assert!(parse(&["--pg-su-password", "x", "--pg-su-passwordfile", "/f"]).is_err());
    }

    #[test]
    fn required_flags() {
        let r = try_parse_from_with_env_prefix::<Args, _, _>("STKEEPERTEST", ["stolon-keeper", "--cluster-name", "c"]);
        assert_eq!(r.unwrap_err().kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn help_documents_every_flag_and_env_var() {
        let help = with_env_prefix(Args::command(), "STKEEPER").render_long_help().to_string();
        for flag in [
            "--uid", "--data-dir", "--pg-listen-address", "--pg-port", "--pg-advertise-address",
            "--pg-advertise-port", "--pg-bin-path", "--pg-su-username", "--pg-su-password",
            "--pg-su-passwordfile", "--pg-repl-username", "--pg-repl-password", "--pg-repl-passwordfile",
            "--pg-su-auth-method", "--pg-repl-auth-method", "--can-be-master",
            "--can-be-synchronous-replica", "--metrics-listen-address", "--cluster-name", "--allow-reinit",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
        assert!(help.contains("STKEEPER_PG_REPL_PASSWORDFILE"), "{help}");
        assert!(help.contains("STKEEPER_ALLOW_REINIT"), "{help}");
    }

    #[test]
    fn secrets_are_never_printed() {
        let s = Secret::new("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        let a = parse(&["--pg-su-password", "hunter2"]).unwrap();
        assert_eq!(a.pg_su_password.as_deref(), Some("hunter2"));
    }

    #[test]
    fn reading_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        let s = read_secret(None, Some(&f), "--pg-su-passwordfile").unwrap().unwrap();
        assert_eq!(s.expose(), "s3cret");
        assert!(read_secret(None, None, "x").unwrap().is_none());
        assert!(matches!(
            read_secret(None, Some(&dir.path().join("nope")), "--pg-su-passwordfile"),
            Err(StartupError::PasswordFile { .. })
        ));
        assert!(matches!(read_secret(Some(&"a\nb".to_string()), None, "x"), Err(StartupError::Flag { .. })));
    }

    #[test]
    fn passwords_required_unless_trust() {
        assert!(require_password(AuthMethod::Md5, &None, "superuser", "--pg-su-password").is_err());
        assert!(require_password(AuthMethod::Trust, &None, "superuser", "--pg-su-password").is_ok());
        assert!(require_password(AuthMethod::Md5, &Some(Secret::new("x".into())), "superuser", "f").is_ok());
    }

    #[test]
    fn uids_and_addresses() {
        assert!(valid_keeper_uid("keeper_1-a"));
        assert!(!valid_keeper_uid("a/b"));
        assert!(!valid_keeper_uid(""));
        assert!(is_wildcard_address("*"));
        assert!(is_wildcard_address("0.0.0.0"));
        assert!(is_wildcard_address("10.0.0.1,127.0.0.1"));
        assert!(!is_wildcard_address("10.0.0.1"));
    }
}
