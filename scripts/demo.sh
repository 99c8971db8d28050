#!/usr/bin/env bash
# A local stolon-rs cluster to play with, no Docker needed: etcd, three keepers, two sentinels and
# a proxy as local processes, a client inserting through the proxy every 100 ms, and a live table
# of the cluster. Kill the master from another terminal (the screen prints the exact command) and
# watch the failover; a dead keeper is restarted after 10 s and rejoins. Ctrl-C stops and cleans up.
#
# Run as root on Debian 12: installs what is missing (etcd-server, protobuf-compiler,
# postgresql-15), builds the binaries if needed, then runs target/debug/stolon-demo. Keepers run
# as the postgres OS user, which is why root is needed.
#
# Environment:
#   STOLON_TEST_PG_BIN    PostgreSQL bin dir (default /usr/lib/postgresql/15/bin)
#   STOLON_TEST_KEEP=1    keep the temp dir (data dirs and every process's log) after Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/demo.sh: run as root: keepers run PostgreSQL as the postgres OS user" >&2
  exit 1
fi

# shellcheck source=scripts/prerequisites.sh
. scripts/prerequisites.sh
stolon_prerequisites scripts/demo.sh "${STOLON_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}"

# Cheap when nothing changed. Only the binaries the demo runs (rather than --workspace): faster,
# and a crate the demo does not use cannot break it.
log "cargo build (keeper, sentinel, proxy, stolonctl, stolon-demo)"
cargo build --locked --bins -p stolon-keeper -p stolon-sentinel -p stolon-proxy -p stolonctl -p stolon-tests

bin_dir="${CARGO_TARGET_DIR:-target}/debug"
export STOLON_BIN_DIR="${STOLON_BIN_DIR:-$(cd "$bin_dir" && pwd)}"
# exec: the demo then receives the terminal's Ctrl-C itself and cleans up before exiting.
exec "$bin_dir/stolon-demo"
