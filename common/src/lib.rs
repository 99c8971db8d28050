//! stolon-common: what every stolon-rs binary shares at its edges.
//!
//! - `cli`: the common flags (README, "Common flags") and the `<PREFIX>_<FLAG>` environment variables;
//! - `logging`: `--log-level` and `--log-format` (text or JSON) for `tracing`;
//! - `http`: the metrics/probe HTTP server and a small Prometheus text writer;
//! - `signals`: a future that resolves on SIGTERM or SIGINT.
#![forbid(unsafe_code)]

pub mod cli;
pub mod http;
pub mod logging;
pub mod signals;

pub use cli::{parse_with_env_prefix, CommonArgs, MetricsArgs};
