#!/usr/bin/env bash
# Runs every stolon-bench benchmark against a release build: failover time, proxy overhead vs
# direct and HAProxy, idle footprint. Prints the machine and every table on stdout and keeps a
# copy in target/bench/run-<date>.md; bench/RESULTS.md is written by hand from such a copy.
#
# Needs what scripts/test.sh installs (etcd-server, postgresql-15, protobuf-compiler) and runs as
# root (PostgreSQL runs as the postgres OS user). Installs haproxy if it is missing.
#
# Environment:
#   BENCH_FAILOVER_RUNS   runs per spec of the failover benchmark (default 5)
#   BENCH_ROUNDS          interleaved rounds of the proxy-overhead benchmark (default 5)
#   STOLON_TEST_PG_BIN    PostgreSQL bin dir (default /usr/lib/postgresql/15/bin)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v haproxy >/dev/null 2>&1; then
  echo "==> installing haproxy" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends haproxy >/dev/null
fi
# The Debian package starts a haproxy service we do not use.
if command -v systemctl >/dev/null 2>&1; then
  systemctl stop haproxy >/dev/null 2>&1 || true
fi

echo "==> cargo build --release --workspace" >&2
cargo build --release --workspace 2>&1 | tail -n 2 >&2
export STOLON_BIN_DIR="$PWD/target/release"
bench="$STOLON_BIN_DIR/stolon-bench"

mkdir -p target/bench
out="target/bench/run-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "# stolon-bench run"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (the machine may be shared)"
  echo "- $(uname -sr); $("${STOLON_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}/postgres" --version); $(etcd --version | head -n1); $(haproxy -v | head -n1)"
  echo
} | tee "$out"

"$bench" failover --runs "${BENCH_FAILOVER_RUNS:-5}" | tee -a "$out"
"$bench" proxy-overhead --rounds "${BENCH_ROUNDS:-5}" | tee -a "$out"
# The same, persistent connections only, with the forwarder on a core of its own (as a proxy in
# its own pod or host): what remains is the latency it adds, not the CPU it takes.
if [ "$(nproc)" -ge 2 ]; then
  "$bench" proxy-overhead --rounds "${BENCH_ROUNDS:-5}" --persistent-only --cpu-layout split | tee -a "$out"
fi
"$bench" idle | tee -a "$out"
echo "==> results in $out" >&2
