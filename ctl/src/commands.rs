//! The stolonctl commands. Each one validates its input first, then reads clusterdata and writes
//! it back by compare-and-swap, retrying a few times when a sentinel wrote in between.

use crate::{Cli, ClusterdataCmd, Cmd, JsonInput, OutputFormat};
use chrono::Utc;
use clusterview::data::{ClusterData, DataError};
use clusterview::spec::{ClusterRole, ClusterSpec, SpecError};
use clusterview::store::{Expect, Store, StoreError, Versioned};
use std::io::Read;

/// Why a command failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("invalid clusterdata document: {0}")]
    Data(#[from] DataError),
    #[error("cannot read {what}: {source}")]
    Input { what: String, source: std::io::Error },
    #[error("give the JSON either as an argument or with --file, not both")]
    TwoInputs,
    #[error("no JSON given: pass it as an argument or with --file FILE (or --file - for stdin)")]
    NoInput,
    #[error("cluster {cluster:?} is already initialized; pass -y to re-initialize it (its current clusterdata is discarded and the keepers' data will be re-created)")]
    AlreadyInitialized { cluster: String },
    #[error("clusterdata for cluster {cluster:?} already exists; pass -y to replace it")]
    WouldReplace { cluster: String },
    #[error("no clusterdata for cluster {cluster:?} under prefix {prefix:?}: check --cluster-name and --store-prefix, or run `stolonctl init`")]
    NotInitialized { cluster: String, prefix: String },
    #[error("keeper {0:?} is not in the clusterdata; see `stolonctl status` for the keepers' uids")]
    UnknownKeeper(String),
    #[error("keeper {0:?} runs the master db; fail it over first with `stolonctl failkeeper {0}`")]
    KeeperIsMaster(String),
    #[error("the cluster is already a primary (role master); nothing to promote")]
    NotStandby,
    #[error("promoting a standby cluster makes it accept writes; pass -y to confirm")]
    PromoteNeedsConfirmation,
    #[error("clusterdata kept changing while updating it ({0} attempts); try again")]
    TooManyConflicts(u32),
    #[error("cannot write output: {0}")]
    Output(#[from] serde_json::Error),
}

const CAS_ATTEMPTS: u32 = 5;

/// Fields this version does not know are stored as given (a newer component may use them), but
/// the operator hears of them: a typo would otherwise pass silently.
fn warn_unknown_fields(spec: &ClusterSpec) {
    let unknown = spec.unknown_fields();
    if !unknown.is_empty() {
        eprintln!(
            "warning: cluster spec fields unknown to this stolonctl, stored as given but ignored by components that do not know them: {} (check their spelling)",
            unknown.join(", ")
        );
    }
}

pub async fn run(cli: Cli) -> Result<(), CtlError> {
    let config = cli.common.store_config()?;
    let prefix = config.prefix.clone();
    let cluster = config.cluster_name.clone();
    // Parse and validate every input before connecting: bad input never reaches the store.
    match cli.command {
        Cmd::Init { input, yes } => {
            let text = read_input(&input)?.unwrap_or_else(|| r#"{"initMode":"new"}"#.to_string());
            let spec = ClusterSpec::parse_valid(&text)?;
            warn_unknown_fields(&spec);
            let store = Store::connect(&config).await?;
            init(&store, spec, yes, &cluster).await
        }
        Cmd::Status { format } => {
            let store = Store::connect(&config).await?;
            let status = crate::status::gather(&store).await?;
            let Some(status) = status else {
                return Err(CtlError::NotInitialized { cluster, prefix });
            };
            match format {
                OutputFormat::Text => print!("{}", crate::status::render_text(&status)),
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&status)?),
            }
            Ok(())
        }
        Cmd::Spec { defaults } => {
            let store = Store::connect(&config).await?;
            let current = require(&store, &cluster, &prefix).await?;
            let spec = &current.value.cluster.spec;
            let shown = if defaults { spec.with_defaults() } else { spec.clone() };
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(())
        }
        Cmd::Update { input, patch } => {
            let text = read_input(&input)?.ok_or(CtlError::NoInput)?;
            if !patch {
                // A full replacement can be checked before connecting.
                warn_unknown_fields(&ClusterSpec::parse_valid(&text)?);
            }
            let store = Store::connect(&config).await?;
            modify(&store, &cluster, &prefix, |cd| {
                let new_spec = if patch { cd.cluster.spec.patched(&text)? } else { ClusterSpec::parse(&text)? };
                new_spec.validate()?;
                if patch {
                    warn_unknown_fields(&new_spec);
                }
                cd.cluster.spec = new_spec;
                Ok(())
            })
            .await
        }
        Cmd::Failkeeper { uid } => {
            let store = Store::connect(&config).await?;
            modify(&store, &cluster, &prefix, |cd| {
                let keeper = cd.keepers.get_mut(&uid).ok_or_else(|| CtlError::UnknownKeeper(uid.clone()))?;
                keeper.status.force_fail = true;
                Ok(())
            })
            .await
        }
        Cmd::Removekeeper { uid } => {
            let store = Store::connect(&config).await?;
            modify(&store, &cluster, &prefix, |cd| remove_keeper(cd, &uid)).await
        }
        Cmd::Promote { yes } => {
            let store = Store::connect(&config).await?;
            modify(&store, &cluster, &prefix, |cd| {
                if cd.cluster.spec.role() != ClusterRole::Standby {
                    return Err(CtlError::NotStandby);
                }
                if !yes {
                    return Err(CtlError::PromoteNeedsConfirmation);
                }
                cd.cluster.spec.role = Some(ClusterRole::Master);
                Ok(())
            })
            .await
        }
        Cmd::Clusterdata { action: ClusterdataCmd::Read } => {
            let store = Store::connect(&config).await?;
            let raw = store.get_cluster_data_raw().await?;
            let raw = raw.ok_or(CtlError::NotInitialized { cluster, prefix })?;
            println!("{}", String::from_utf8_lossy(&raw.value));
            Ok(())
        }
        Cmd::Clusterdata { action: ClusterdataCmd::Write { input, yes } } => {
            let text = read_input(&input)?.ok_or(CtlError::NoInput)?;
            let data = ClusterData::from_json(text.as_bytes())?;
            data.cluster.spec.validate()?;
            let store = Store::connect(&config).await?;
            let expect = match store.get_cluster_data_raw().await? {
                None => Expect::Absent,
                Some(_) if !yes => return Err(CtlError::WouldReplace { cluster }),
                Some(current) => Expect::Revision(current.revision),
            };
            store.put_cluster_data(&data, expect).await?;
            eprintln!("clusterdata written");
            Ok(())
        }
    }
}

/// Reads the JSON argument or file; `None` when neither was given.
fn read_input(input: &JsonInput) -> Result<Option<String>, CtlError> {
    match (&input.json, &input.file) {
        (Some(_), Some(_)) => Err(CtlError::TwoInputs),
        (Some(json), None) => Ok(Some(json.clone())),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| CtlError::Input { what: "stdin".into(), source })?;
            Ok(Some(text))
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(Some)
            .map_err(|source| CtlError::Input { what: path.display().to_string(), source }),
        (None, None) => Ok(None),
    }
}

async fn init(store: &Store, spec: ClusterSpec, yes: bool, cluster: &str) -> Result<(), CtlError> {
    let expect = match store.get_cluster_data_raw().await? {
        None => Expect::Absent,
        Some(_) if !yes => return Err(CtlError::AlreadyInitialized { cluster: cluster.to_string() }),
        Some(current) => Expect::Revision(current.revision),
    };
    let data = ClusterData::new_initializing(spec, Utc::now());
    store.put_cluster_data(&data, expect).await?;
    eprintln!("cluster {cluster:?} initialized (uid {}); the sentinel will now pick a keeper", data.cluster.uid);
    Ok(())
}

async fn require(store: &Store, cluster: &str, prefix: &str) -> Result<Versioned<ClusterData>, CtlError> {
    store
        .get_cluster_data()
        .await?
        .ok_or_else(|| CtlError::NotInitialized { cluster: cluster.to_string(), prefix: prefix.to_string() })
}

/// Read-modify-CAS-write with retries; `change` is re-applied to the fresh document each time.
async fn modify<F>(store: &Store, cluster: &str, prefix: &str, mut change: F) -> Result<(), CtlError>
where
    F: FnMut(&mut ClusterData) -> Result<(), CtlError>,
{
    for _ in 0..CAS_ATTEMPTS {
        let current = require(store, cluster, prefix).await?;
        let mut data = current.value;
        change(&mut data)?;
        data.cluster.generation += 1;
        data.cluster.change_time = Utc::now();
        data.change_time = Utc::now();
        match store.put_cluster_data(&data, Expect::Revision(current.revision)).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(CtlError::TooManyConflicts(CAS_ATTEMPTS))
}

/// Removes a keeper and its db, unless it runs the master db.
fn remove_keeper(cd: &mut ClusterData, uid: &str) -> Result<(), CtlError> {
    if !cd.keepers.contains_key(uid) {
        return Err(CtlError::UnknownKeeper(uid.to_string()));
    }
    if cd.master_db().is_some_and(|db| db.spec.keeper_uid == uid) {
        return Err(CtlError::KeeperIsMaster(uid.to_string()));
    }
    cd.keepers.remove(uid);
    let removed: Vec<String> =
        cd.dbs.values().filter(|db| db.spec.keeper_uid == uid).map(|db| db.uid.clone()).collect();
    for db_uid in &removed {
        cd.dbs.remove(db_uid);
    }
    let now = Utc::now();
    for db in cd.dbs.values_mut() {
        let before = db.spec.clone();
        db.spec.followers.retain(|f| !removed.contains(f));
        // A removed db leaves the synchronous set at once: dropping a member never lets an
        // election pick a standby that missed acknowledged commits (the others listed are
        // still in sync), and the sentinel then chooses a replacement through its safe path.
        db.spec.synchronous_standbys.retain(|u| !removed.contains(u));
        db.status.synchronous_standbys.retain(|u| !removed.contains(u));
        // The keeper applies a spec, and the sentinel judges convergence, by generation.
        if db.spec != before {
            db.generation += 1;
            db.change_time = now;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clusterview::data::*;

    fn cluster() -> ClusterData {
        let spec = ClusterSpec::parse_valid(r#"{"initMode":"new"}"#).unwrap();
        let mut cd = ClusterData::new_initializing(spec, Utc::now());
        for (k, db, role) in [("k0", "d0", DbRole::Master), ("k1", "d1", DbRole::Standby)] {
            cd.keepers.insert(k.into(), Keeper { uid: k.into(), generation: 1, change_time: Utc::now(), status: KeeperStatus::default() });
            cd.dbs.insert(
                db.into(),
                Db {
                    uid: db.into(),
                    generation: 1,
                    change_time: Utc::now(),
                    spec: DbSpec {
                        keeper_uid: k.into(),
                        role,
                        init_mode: DbInitMode::None,
                        follow_config: None,
                        followers: if role == DbRole::Master { vec!["d1".into()] } else { vec![] },
                        synchronous_replication: false,
                        synchronous_standbys: vec![],
                    },
                    status: DbStatus::default(),
                },
            );
        }
        cd.cluster.status = ClusterStatus { phase: ClusterPhase::Normal, master: Some("d0".into()) };
        cd
    }

    #[test]
    fn removekeeper_removes_a_standby_and_its_db_everywhere() {
        let mut cd = cluster();
        remove_keeper(&mut cd, "k1").unwrap();
        assert!(!cd.keepers.contains_key("k1"));
        assert!(!cd.dbs.contains_key("d1"));
        assert!(cd.dbs["d0"].spec.followers.is_empty());
    }

    /// The master's spec changes (followers, synchronous standbys), so its generation must be
    /// bumped: the keeper applies a spec only when the generation moves, and the sentinel judges
    /// convergence by it. The removed db leaves the synchronous set and what is known in sync
    /// (it can never be elected again; the others listed stay in sync).
    #[test]
    fn removekeeper_bumps_the_master_generation_and_drops_its_db_from_the_sync_set() {
        let mut cd = cluster();
        let master = cd.dbs.get_mut("d0").unwrap();
        master.spec.synchronous_replication = true;
        master.spec.synchronous_standbys = vec!["d1".into()];
        master.status.synchronous_standbys = vec!["d1".into()];
        let before = master.change_time;
        remove_keeper(&mut cd, "k1").unwrap();
        let master = &cd.dbs["d0"];
        assert_eq!(master.generation, 2, "the master's spec changed: its generation must move");
        assert!(master.change_time >= before);
        assert!(master.spec.synchronous_standbys.is_empty());
        assert!(master.status.synchronous_standbys.is_empty());
        assert!(master.spec.synchronous_replication, "synchronous replication itself stays on");
    }

    #[test]
    fn removekeeper_leaves_unchanged_dbs_alone() {
        let mut cd = cluster();
        cd.keepers.insert("k2".into(), Keeper { uid: "k2".into(), generation: 1, change_time: Utc::now(), status: KeeperStatus::default() });
        remove_keeper(&mut cd, "k2").unwrap();
        assert_eq!(cd.dbs["d0"].generation, 1, "a keeper without a db changes no db spec");
        assert_eq!(cd.dbs["d1"].generation, 1);
    }

    #[test]
    fn removekeeper_refuses_the_master_and_unknown_keepers() {
        let mut cd = cluster();
        assert!(matches!(remove_keeper(&mut cd, "k0"), Err(CtlError::KeeperIsMaster(_))));
        assert!(matches!(remove_keeper(&mut cd, "nope"), Err(CtlError::UnknownKeeper(_))));
        assert_eq!(cd.keepers.len(), 2, "a refusal changes nothing");
        assert_eq!(cd.dbs.len(), 2);
    }
}
