//! Common flags and their environment variables.
//!
//! Flags keep Stolon's names so existing deployments move over. Every long flag of a binary can
//! also be given as `<PREFIX>_<FLAG_UPPER_SNAKE>` (e.g. `STKEEPER_PG_SU_PASSWORDFILE`); the flag
//! wins over the variable. The variables are attached generically by `parse_with_env_prefix`, so a
//! new flag can never forget its variable, and `--help` lists each one.

use clap::{ArgAction, Command, Parser};
use clusterview::store::{StoreBackend, StoreConfig, StoreError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags every binary takes (README, "Common flags").
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Name of the cluster; keys live under <store-prefix>/<cluster-name>/ (required).
    #[arg(long, value_name = "NAME")]
    pub cluster_name: String,
    /// Store backend: etcdv3 (etcd is accepted as an alias).
    #[arg(long, default_value = "etcdv3", value_name = "BACKEND")]
    pub store_backend: String,
    /// Comma-separated etcd endpoints, e.g. http://10.0.0.1:2379,http://10.0.0.2:2379.
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',', value_name = "URLS")]
    pub store_endpoints: Vec<String>,
    /// Key prefix in the store.
    #[arg(long, default_value = "stolon/cluster", value_name = "PREFIX")]
    pub store_prefix: String,
    /// Timeout of one store request (Go duration, e.g. 5s, 1500ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub store_timeout: Duration,
    /// Client certificate (PEM) for TLS to etcd; needs --store-key.
    #[arg(long, value_name = "FILE")]
    pub store_cert_file: Option<PathBuf>,
    /// Client private key (PEM) for TLS to etcd; needs --store-cert-file.
    #[arg(long, value_name = "FILE")]
    pub store_key: Option<PathBuf>,
    /// CA certificate (PEM) to verify etcd's server certificate.
    #[arg(long, value_name = "FILE")]
    pub store_ca_file: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: crate::logging::LogLevel,
    /// Log format: text (human readable) or json (one object per line).
    #[arg(long, default_value = "text", value_name = "FORMAT")]
    pub log_format: crate::logging::LogFormat,
}

/// `--metrics-listen-address`, taken by the daemons (not by stolonctl).
#[derive(clap::Args, Debug, Clone)]
pub struct MetricsArgs {
    /// Address (host:port) serving /metrics (and the probes, on keeper and proxy). Off when unset.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen_address: Option<SocketAddr>,
}

impl CommonArgs {
    /// The store configuration these flags describe.
    pub fn store_config(&self) -> Result<StoreConfig, StoreError> {
        let backend: StoreBackend = self.store_backend.parse()?;
        Ok(StoreConfig {
            backend,
            endpoints: self.store_endpoints.iter().map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect(),
            prefix: self.store_prefix.clone(),
            cluster_name: self.cluster_name.clone(),
            timeout: self.store_timeout,
            cert_file: self.store_cert_file.clone(),
            key_file: self.store_key.clone(),
            ca_file: self.store_ca_file.clone(),
        })
    }
}

/// A clap value parser for Go-style durations (`5s`, `1m30s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    clusterview::duration::parse(s).map_err(|e| e.to_string())
}

/// The environment variable of a long flag: `STKEEPER` + `pg-su-password` -> `STKEEPER_PG_SU_PASSWORD`.
pub fn env_var_name(prefix: &str, long: &str) -> String {
    format!("{prefix}_{}", long.to_uppercase().replace('-', "_"))
}

/// Attaches `<prefix>_<FLAG>` to every long flag of `cmd` and of its subcommands.
pub fn with_env_prefix(cmd: Command, prefix: &str) -> Command {
    let prefix_owned = prefix.to_string();
    cmd.mut_args(move |arg| {
        let skip = arg.is_positional()
            || matches!(arg.get_action(), ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version);
        match (skip, arg.get_long().map(str::to_string)) {
            (false, Some(long)) => arg.env(env_var_name(&prefix_owned, &long)),
            _ => arg,
        }
    })
    .mut_subcommands(|sub| with_env_prefix(sub, prefix))
}

/// Parses the process arguments of `T`, with environment variables under `prefix`.
/// Exits with clap's usage message and status 2 on bad input, like any clap program.
pub fn parse_with_env_prefix<T: Parser>(prefix: &str) -> T {
    let matches = with_env_prefix(T::command(), prefix).get_matches();
    T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// As `parse_with_env_prefix`, from explicit arguments (for tests).
pub fn try_parse_from_with_env_prefix<T: Parser, I, S>(prefix: &str, args: I) -> Result<T, clap::Error>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let matches = with_env_prefix(T::command(), prefix).try_get_matches_from(args)?;
    T::from_arg_matches(&matches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[derive(Parser, Debug)]
    struct Demo {
        #[command(flatten)]
        common: CommonArgs,
        /// A bool flag with an explicit value, like --can-be-master=false.
        #[arg(long, default_value_t = true, action = ArgAction::Set)]
        can_be_master: bool,
    }

    #[test]
    fn env_names() {
        assert_eq!(env_var_name("STKEEPER", "pg-su-passwordfile"), "STKEEPER_PG_SU_PASSWORDFILE");
    }

    #[test]
    fn flags_parse_and_env_is_listed_in_help() {
        let d: Demo = try_parse_from_with_env_prefix(
            "STDEMO",
            ["demo", "--cluster-name", "c1", "--store-endpoints", "http://a:1,http://b:2", "--store-timeout", "1m30s", "--can-be-master=false"],
        )
        .unwrap();
        assert_eq!(d.common.cluster_name, "c1");
        assert_eq!(d.common.store_endpoints, vec!["http://a:1", "http://b:2"]);
        assert_eq!(d.common.store_timeout, Duration::from_secs(90));
        assert!(!d.can_be_master);
        let help = with_env_prefix(Demo::command(), "STDEMO").render_long_help().to_string();
        assert!(help.contains("STDEMO_CLUSTER_NAME"), "{help}");
        assert!(help.contains("STDEMO_STORE_ENDPOINTS"), "{help}");
        assert!(!help.contains("STDEMO_HELP"), "{help}");
    }

    #[test]
    fn bad_values_are_refused() {
        let missing = try_parse_from_with_env_prefix::<Demo, _, _>("STDEMO2", ["demo"]).unwrap_err();
        assert_eq!(missing.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let neg = try_parse_from_with_env_prefix::<Demo, _, _>("STDEMO2", ["demo", "--cluster-name", "c", "--store-timeout=-1s"]).unwrap_err();
        assert_eq!(neg.kind(), clap::error::ErrorKind::ValueValidation);
        let d: Demo = try_parse_from_with_env_prefix("STDEMO2", ["demo", "--cluster-name", "c", "--store-backend", "consul"]).unwrap();
        assert!(d.common.store_config().is_err());
    }
}
