//! `--log-level` and `--log-format` for `tracing`. Logs go to stderr so stdout stays clean for
//! command output (stolonctl) and so the keeper's postgres output can be told apart.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Installs the global subscriber. Our crates log at `level`; chatty dependencies (tonic, h2,
/// hyper) only at warn unless RUST_LOG says otherwise.
pub fn init(level: LogLevel, format: LogFormat) {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        format!("warn,stolon={lvl},stolon_keeper={lvl},stolon_sentinel={lvl},stolon_proxy={lvl},stolonctl={lvl},clusterview={lvl},stolon_common={lvl}", lvl = level.as_str())
    });
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new(level.as_str()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
