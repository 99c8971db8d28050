//! Harness for the real-component integration tests: real etcd, real
//! PostgreSQL and our real binaries, each started as a child process that is
//! killed when the test ends, pass or panic.
//!
//! Module map:
//! - [`testdir`]: a per-test temporary directory (kept with `STOLON_TEST_KEEP=1`)
//!   that the `postgres` OS user can traverse, holding data dirs and logs.
//! - [`process`]: [`ChildGuard`], a child in its own process group whose whole
//!   group is killed on drop, with its output captured to a log file.
//! - [`ports`]: loopback ports that no other test in this process was handed.
//! - [`etcd`]: single etcd servers and multi-member clusters with per-member
//!   kill / freeze / restart.
//! - [`postgres`]: running commands as the `postgres` OS user, a standalone
//!   PostgreSQL instance, and small async SQL helpers.
//! - [`bins`]: where the binaries under test (`stolon-keeper`, ...) live.
//! - [`wait`]: [`wait_until`], the one polling loop with a deadline.
//! - [`load`]: a background writer recording acknowledged ids, and probes for safety scenarios.
//! - [`relay`]: a pausable TCP relay, e.g. a slow store link for one keeper.
//! - [`haproxy`]: HAProxy routing to the keeper whose `/primary` answers 200.
//!
//! Fixtures (`start` functions) panic instead of returning errors: a test that
//! cannot start etcd has no better recovery than failing with the log tail,
//! which is what the panic message carries.
//!
//! The workspace lints are applied here rather than in Cargo.toml so that
//! they bind the harness itself while the integration tests under `tests/`
//! remain free to `unwrap`, as tests may.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

pub mod bins;
pub mod cluster;
pub mod etcd;
pub mod haproxy;
pub mod load;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod relay;
pub mod store;
pub mod testdir;
pub mod wait;

pub use bins::{bin_dir, bin_path, KEEPER, PROXY, SENTINEL, STOLONCTL};
pub use etcd::{Etcd, EtcdCluster, EtcdMember};
pub use ports::{free_port, free_ports};
pub use postgres::StandalonePostgres;
pub use process::ChildGuard;
pub use store::{connect_store, store_config};
pub use testdir::TestDir;
pub use wait::{wait_until, wait_until_desc, Attempt};
