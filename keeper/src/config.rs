//! `KeeperConfig`: the keeper's settings once flags are checked and defaults resolved (the OS
//! user, the PostgreSQL bin dir and version, the keeper uid from keeperstate.json, passwords read
//! from their files). Built once at start-up; everything after it reads only this.

use crate::args::{self, Args, AuthMethod, Secret};
use crate::error::StartupError;
use crate::{preflight, quote, state};
use clusterview::info::PgVersion;
use std::path::PathBuf;

/// The keeper's resolved settings.
#[derive(Debug, Clone)]
pub struct KeeperConfig {
    pub uid: String,
    /// `--data-dir`: keeper state, lock, pgpass, and postgres' unix socket.
    pub data_dir: PathBuf,
    /// `<data-dir>/postgres`: PGDATA.
    pub pgdata: PathBuf,
    /// `<data-dir>/pgpass` (0600), used through `passfile=` / `PGPASSFILE`.
    pub pgpass: PathBuf,
    pub listen_address: String,
    pub port: u16,
    pub advertise_address: String,
    pub advertise_port: u16,
    pub bin_dir: PathBuf,
    pub pg_version: PgVersion,
    pub su_username: String,
    pub su_password: Option<Secret>,
    pub repl_username: String,
    pub repl_password: Option<Secret>,
    pub su_auth: AuthMethod,
    pub repl_auth: AuthMethod,
    pub can_be_master: bool,
    pub can_be_synchronous_replica: bool,
    /// `--allow-reinit`: initdb or a copy from another cluster may replace existing data.
    pub allow_reinit: bool,
    /// New at each start of the keeper process; published in its info, and recorded by the
    /// sentinel in clusterdata's keeper status.
    pub boot_uuid: String,
}

impl KeeperConfig {
    /// The unix socket directory: the keeper's data dir, private to its OS user.
    pub fn socket_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// A PostgreSQL program in the bin dir.
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// Checks the flags and resolves defaults. `euid` is the (non-root) effective uid. Needs the data
/// dir to exist and be locked already (it may create keeperstate.json).
pub fn resolve(args: &Args, euid: u32) -> Result<KeeperConfig, StartupError> {
    let su_username = match &args.pg_su_username {
        Some(name) => name.clone(),
        None => preflight::os_user_name(euid).ok_or(StartupError::Flag {
            flag: "--pg-su-username",
            reason: format!("cannot find the name of OS user {euid} to use as superuser name: set --pg-su-username"),
        })?,
    };
    for (flag, name) in [("--pg-su-username", &su_username), ("--pg-repl-username", &args.pg_repl_username)] {
        if !quote::valid_name(name) {
            return Err(StartupError::Flag { flag, reason: format!("{name:?} is not a usable role name (1 to 63 bytes, no '\"', no control characters)") });
        }
    }
    if su_username == args.pg_repl_username {
        return Err(StartupError::Flag {
            flag: "--pg-repl-username",
            reason: "must differ from the superuser name (--pg-su-username, default: the OS user)".into(),
        });
    }
    let su_password = args::read_secret(args.pg_su_password.as_ref(), args.pg_su_passwordfile.as_deref(), "--pg-su-passwordfile")?;
    let repl_password = args::read_secret(args.pg_repl_password.as_ref(), args.pg_repl_passwordfile.as_deref(), "--pg-repl-passwordfile")?;
    args::require_password(args.pg_su_auth_method, &su_password, "superuser", "--pg-su-password / --pg-su-passwordfile")?;
    args::require_password(args.pg_repl_auth_method, &repl_password, "replication user", "--pg-repl-password / --pg-repl-passwordfile")?;

    let advertise_address = args.pg_advertise_address.clone().unwrap_or_else(|| args.pg_listen_address.clone());
    if args::is_wildcard_address(&advertise_address) {
        return Err(StartupError::Flag {
            flag: "--pg-advertise-address",
            reason: format!("--pg-listen-address {:?} is not an address other hosts can connect to: set --pg-advertise-address to this host's address", args.pg_listen_address),
        });
    }
    let data_dir = std::path::absolute(&args.data_dir)
        .map_err(|source| StartupError::Io { what: "resolve", path: args.data_dir.clone(), source })?;
    preflight::check_socket_path(&data_dir, args.pg_port)?;
    let bin_dir = preflight::find_bin_dir(args.pg_bin_path.as_deref())?;
    let pg_version = preflight::pg_version(&bin_dir)?;
    let uid = keeper_uid(&data_dir, args.uid.as_deref())?;
    Ok(KeeperConfig {
        uid,
        pgdata: data_dir.join("postgres"),
        pgpass: data_dir.join(state::PGPASS_FILE),
        data_dir,
        listen_address: args.pg_listen_address.clone(),
        port: args.pg_port,
        advertise_address,
        advertise_port: args.pg_advertise_port.unwrap_or(args.pg_port),
        bin_dir,
        pg_version,
        su_username,
        su_password,
        repl_username: args.pg_repl_username.clone(),
        repl_password,
        su_auth: args.pg_su_auth_method,
        repl_auth: args.pg_repl_auth_method,
        can_be_master: args.can_be_master,
        can_be_synchronous_replica: args.can_be_synchronous_replica,
        allow_reinit: args.allow_reinit,
        boot_uuid: uuid::Uuid::new_v4().to_string(),
    })
}

/// The keeper uid: the recorded one (a different --uid is refused), else --uid, else a new one;
/// recorded in keeperstate.json on first use.
fn keeper_uid(data_dir: &std::path::Path, flag: Option<&str>) -> Result<String, StartupError> {
    let path = data_dir.join(state::KEEPER_STATE_FILE);
    let recorded = state::read_keeper_state(data_dir).map_err(|reason| StartupError::State { path: path.clone(), reason })?;
    if let Some(uid) = flag {
        if !args::valid_keeper_uid(uid) {
            return Err(StartupError::Flag { flag: "--uid", reason: format!("{uid:?} must be 1 to 63 letters, digits, '_' or '-'") });
        }
    }
    match (recorded, flag) {
        (Some(rec), Some(given)) if rec.uid != given => {
            Err(StartupError::UidMismatch { dir: data_dir.to_path_buf(), recorded: rec.uid, given: given.to_string() })
        }
        (Some(rec), _) => Ok(rec.uid),
        (None, given) => {
            let uid = given.map(str::to_string).unwrap_or_else(clusterview::new_uid);
            state::write_keeper_state(data_dir, &state::KeeperState { uid: uid.clone() })
                .map_err(|source| StartupError::Io { what: "write", path, source })?;
            Ok(uid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_generated_once_and_then_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let first = keeper_uid(dir.path(), None).unwrap();
        assert_eq!(keeper_uid(dir.path(), None).unwrap(), first);
        assert_eq!(keeper_uid(dir.path(), Some(&first)).unwrap(), first);
        assert!(matches!(keeper_uid(dir.path(), Some("other")), Err(StartupError::UidMismatch { .. })));
        let dir2 = tempfile::tempdir().unwrap();
        assert_eq!(keeper_uid(dir2.path(), Some("k1")).unwrap(), "k1");
        assert!(matches!(keeper_uid(dir2.path(), Some("a/b")), Err(StartupError::Flag { .. })));
    }
}
