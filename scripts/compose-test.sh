#!/usr/bin/env bash
# Packaging test: the docker-compose example really starts and fails over.
#
#   1. builds the release binaries on the host (cargo build --release),
#   2. builds the local base image stolon-base:bookworm (scripts/build-base-image.sh; cached),
#   3. builds the stolon image from those binaries (Dockerfile, --target prebuilt),
#   4. starts examples/docker-compose under a unique project name, with free host ports,
#   5. waits for a master and two streaming standbys, writes rows through a proxy,
#   6. `docker kill`s the master keeper's container, checks that writes resume through the proxies
#      within a bound and that every row written before is still there,
#   7. starts the old master again and checks that it rejoins as a standby with every row,
#   8. always tears the project down (`down -v`), also on failure or Ctrl-C. The image is kept
#      (a fixed tag) so that the next run reuses its cached layers.
#
# No registry is needed: the etcd members run the base image's etcd. Prints one line per check
# and, last, "N passed, M failed"; exits non-zero on any failure. Without a Docker engine it
# prints a SKIP line and exits 0.
#
# Environment:
#   STOLON_BASE_IMAGE       base image (default stolon-base:bookworm, built when missing)
#   ETCD_IMAGE              image running the etcd members (default: the base image)
#   STOLON_COMPOSE_IMAGE    tag of the image under test (default stolon-rs:compose-test; kept
#                           after the run as the build cache)
#   STOLON_COMPOSE_KEEP=1   leave the cluster running at the end (prints how to remove it)
#   STOLON_COMPOSE_NO_BUILD=1  use the built binaries as they are (skip cargo build)
#   STOLON_COMPOSE_PROFILE  release (default) or debug: which cargo build goes into the image
#                           (scripts/test.sh uses debug, which it has just built anyway)
#   STOLON_COMPOSE_PSQL_IN_DOCKER=1  run psql in a container on the project's network even when
#                           the host has psql (the fallback when it has none)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
case "${STOLON_COMPOSE_PROFILE:-release}" in
  release) CARGO_PROFILE_FLAG=(--release); BIN_DIR=target/release ;;
  debug) CARGO_PROFILE_FLAG=(); BIN_DIR=target/debug ;;
  *) echo "FAIL STOLON_COMPOSE_PROFILE must be release or debug"; echo "0 passed, 1 failed"; exit 1 ;;
esac

COMPOSE_DIR="$ROOT/examples/docker-compose"
COMPOSE_FILE="$COMPOSE_DIR/docker-compose.yml"
BASE_IMAGE="${STOLON_BASE_IMAGE:-stolon-base:bookworm}"
PROJECT="stolonct$(date +%s)$$"
# A fixed tag, kept after the run: the legacy builder's layer cache lives in the image's parents, so
# the next run only re-copies the binaries (seconds instead of a minute).
IMAGE="${STOLON_COMPOSE_IMAGE:-stolon-rs:compose-test}"
BINARIES=(stolon-keeper stolon-sentinel stolon-proxy stolonctl)
KEEPERS=(keeper0 keeper1 keeper2)

# Bounds of every wait, in seconds.
READY_TIMEOUT=240      # first start: etcd, initdb, two basebackups
CATCHUP_TIMEOUT=60     # standbys replay what was written
FAILOVER_TIMEOUT=60    # master killed -> writes accepted again through a proxy
REJOIN_TIMEOUT=180     # old master back -> healthy standby again

passed=0
failed=0
declare -A phase_secs=()

log() { printf '\n==> %s\n' "$*"; }
pass() { passed=$((passed + 1)); printf 'PASS %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }
summary() { printf '%d passed, %d failed\n' "$passed" "$failed"; }
# Stops the test after a failed prerequisite (the EXIT trap tears down and prints the summary).
fatal() { fail "$*"; exit 1; }

# ---- Docker engine and compose -----------------------------------------------------------------

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "SKIP compose-test: no usable Docker engine here (docker info failed); nothing was tested"
  exit 0
fi
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  echo "SKIP compose-test: Docker engine found but neither \`docker compose\` nor docker-compose; nothing was tested"
  exit 0
fi
compose() { "${COMPOSE[@]}" -p "$PROJECT" -f "$COMPOSE_FILE" "$@"; }
for tool in cargo jq python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "FAIL compose-test needs $tool on the host"; echo "0 passed, 1 failed"; exit 1; }
done

# ---- cleanup: always, also on failure -----------------------------------------------------------

CTX=""
cleanup() {
  local rc=$?
  if [ -n "${STARTED:-}" ]; then
    if [ "$failed" -gt 0 ]; then
      log "diagnostics (failed run)"
      compose ps 2>&1 || true
      compose exec -T sentinel1 stolonctl status 2>&1 || true
      compose logs --no-color --tail=40 2>&1 | tail -n 400 || true
    fi
    if [ "${STOLON_COMPOSE_KEEP:-0}" = 1 ]; then
      log "kept running; remove with: ${COMPOSE[*]} -p $PROJECT -f $COMPOSE_FILE down -v"
    else
      compose down -v --remove-orphans >/dev/null 2>&1 || true
    fi
  fi
  [ -n "$CTX" ] && rm -rf "$CTX"
  if [ "$failed" -gt 0 ] && [ "$rc" -eq 0 ]; then rc=1; fi
  # The summary is always the last line.
  summary
  exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted"; exit 130' INT TERM

# timed NAME CMD...: runs CMD, records its duration under NAME.
timed() {
  local name=$1 start=$SECONDS rc
  shift
  "$@"
  rc=$?
  phase_secs[$name]=$((SECONDS - start))
  return $rc
}

# ---- 1-3: binaries, base image, stolon image ----------------------------------------------------

build_binaries() {
  if [ "${STOLON_COMPOSE_NO_BUILD:-0}" = 1 ]; then return 0; fi
  cargo build "${CARGO_PROFILE_FLAG[@]}" --locked -p stolon-keeper -p stolon-sentinel -p stolon-proxy -p stolonctl 2>&1 | tail -n 3
}

build_image() {
  # The build context is a small directory holding only the four binaries (see Dockerfile).
  CTX="$(mktemp -d "${TMPDIR:-/tmp}/stolon-compose-ctx.XXXXXX")"
  local b
  for b in "${BINARIES[@]}"; do cp "$BIN_DIR/$b" "$CTX/" || return 1; done
  local old new
  old="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null)"
  docker build -q --force-rm --target prebuilt --build-arg BASE_IMAGE="$BASE_IMAGE" \
    -t "$IMAGE" -f "$ROOT/Dockerfile" "$CTX" >"$CTX/build.log" 2>&1 || { tail -n 30 "$CTX/build.log"; return 1; }
  # Drop the image this tag replaced (new binaries) with its own layers; the shared parents (the
  # cached runtime stage) stay, as the new image uses them.
  new="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null)"
  if [ -n "$old" ] && [ "$old" != "$new" ]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
}

log "binaries ($BIN_DIR)"
timed binaries build_binaries && [ -x "$BIN_DIR/stolon-keeper" ] ||
  fatal "cargo build of the four binaries ($BIN_DIR)"
pass "binaries built in $BIN_DIR (${phase_secs[binaries]}s)"

log "base image $BASE_IMAGE"
timed base_image scripts/build-base-image.sh || fatal "scripts/build-base-image.sh"
pass "base image $BASE_IMAGE ready (${phase_secs[base_image]}s)"

log "stolon image $IMAGE (--target prebuilt)"
timed image build_image || fatal "docker build --target prebuilt"
pass "image $IMAGE built from $BIN_DIR (${phase_secs[image]}s)"

# ---- 4: start the example -----------------------------------------------------------------------

# Free host ports for the two proxies' read-write and read-only listeners.
read -r RW1 RO1 RW2 RO2 < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(4):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)
export STOLON_IMAGE="$IMAGE" ETCD_IMAGE="${ETCD_IMAGE:-$BASE_IMAGE}"
export STOLON_PROXY1_RW_PORT="$RW1" STOLON_PROXY1_RO_PORT="$RO1"
export STOLON_PROXY2_RW_PORT="$RW2" STOLON_PROXY2_RO_PORT="$RO2"

log "compose up (project $PROJECT; proxy1 $RW1/$RO1, proxy2 $RW2/$RO2)"
test_start=$SECONDS
STARTED=1
compose up -d >"${CTX}/up.log" 2>&1 || { tail -n 30 "$CTX/up.log"; fatal "compose up -d"; }
pass "compose up -d"

# ---- helpers on the running cluster ------------------------------------------------------------

PGPASSWORD="$(head -n 1 "$COMPOSE_DIR/secrets/pg_su_password")"
export PGPASSWORD PGUSER=postgres PGDATABASE=postgres PGCONNECT_TIMEOUT=3

# sql PORT SQL: one statement through a published proxy port; prints the result unaligned.
# Uses the host's psql, else psql inside a throw-away container on the project's network.
if command -v psql >/dev/null 2>&1 && [ "${STOLON_COMPOSE_PSQL_IN_DOCKER:-0}" != 1 ]; then
  sql() { psql -h 127.0.0.1 -p "$1" -X -q -At -v ON_ERROR_STOP=1 -c "$2" 2>&1; }
else
  port_target() { # host port -> service:port inside the network
    case "$1" in "$RW1") echo "proxy1 5432" ;; "$RO1") echo "proxy1 5433" ;;
                 "$RW2") echo "proxy2 5432" ;; "$RO2") echo "proxy2 5433" ;; esac
  }
  sql() {
    local t; read -r -a t < <(port_target "$1")
    docker run --rm --network "${PROJECT}_default" -e PGPASSWORD -e PGUSER -e PGDATABASE \
      -e PGCONNECT_TIMEOUT "$IMAGE" psql -h "${t[0]}" -p "${t[1]}" -X -q -At -v ON_ERROR_STOP=1 -c "$2" 2>&1
  }
fi

# status_json: `stolonctl status --format json` from inside a sentinel container.
status_json() { compose exec -T sentinel1 stolonctl status --format json 2>/dev/null; }
# jq_status FILTER: FILTER applied to the current status (empty output when unavailable).
jq_status() { status_json | jq -r "$1" 2>/dev/null; }

# wait_for SECONDS DESCRIPTION CMD...: retries CMD every 2s until it succeeds or time runs out.
# Sets WAITED to the seconds it took.
wait_for() {
  local bound=$1 what=$2 start=$SECONDS
  shift 2
  while :; do
    if "$@" >/dev/null 2>&1; then WAITED=$((SECONDS - start)); return 0; fi
    if [ $((SECONDS - start)) -ge "$bound" ]; then
      WAITED=$((SECONDS - start))
      printf '  (gave up waiting %ss for: %s)\n' "$bound" "$what"
      return 1
    fi
    sleep 2
  done
}

# A master, and every other keeper a healthy standby following it with a known lag.
cluster_ready() {
  status_json | jq -e '
    .cluster.available and (.cluster.master_keeper_uid != null) and
    (.keepers | length == 3) and
    (.keepers | all(.healthy and .pg_healthy)) and
    ([.keepers[] | select(.role == "standby")] | length == 2)' >/dev/null
}
# Every standby has replayed everything (lag 0).
standbys_caught_up() {
  status_json | jq -e '[.keepers[] | select(.role == "standby") | .lag] | length > 0 and all(. == 0)' >/dev/null
}
# Docker's own healthchecks (GET /health) report healthy for every keeper and proxy.
docker_healthy() {
  local svc id
  for svc in "${KEEPERS[@]}" proxy1 proxy2; do
    id="$(compose ps -q "$svc")" || return 1
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null)" = healthy ] || return 1
  done
}
init_done() {
  local id
  id="$(compose ps -a -q stolonctl-init 2>/dev/null || compose ps -q stolonctl-init)"
  [ -n "$id" ] && [ "$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id")" = "exited 0" ]
}
# insert PORT ID: one acknowledged write.
insert() { [ "$(sql "$1" "INSERT INTO compose_test(id) VALUES ($2) RETURNING id")" = "$2" ]; }
count_rows() { sql "$1" "SELECT count(*) || ':' || coalesce(max(id), 0) FROM compose_test"; }

# ---- 5: the cluster comes up; writes and reads through the proxies -----------------------------

log "waiting for the cluster"
if wait_for 120 "stolonctl-init exited 0" init_done; then
  pass "stolonctl-init initialized the cluster (${WAITED}s)"
else
  fail "stolonctl-init did not exit 0"
fi
wait_for "$READY_TIMEOUT" "a master and two healthy standbys" cluster_ready ||
  fatal "cluster ready (master + 2 standbys) within ${READY_TIMEOUT}s"
pass "master elected and two healthy standbys within ${WAITED}s"
if wait_for 60 "docker healthchecks" docker_healthy; then
  pass "docker healthchecks (GET /health) healthy on 3 keepers and 2 proxies"
else
  fail "docker healthchecks not all healthy"
fi

user="$(compose exec -T keeper0 id -un 2>&1 | tr -d '\r')"
if [ "$user" = postgres ]; then pass "keeper runs as the non-root postgres user"; else fail "keeper runs as '$user', not postgres"; fi

master="$(jq_status '.cluster.master_keeper_uid')"
out="$(sql "$RW1" "CREATE TABLE compose_test (id int PRIMARY KEY, at timestamptz DEFAULT now())")"
if [ -z "$out" ]; then pass "create table through proxy1 (master $master)"; else fatal "create table through proxy1: $out"; fi

N=50
ok=0
for i in $(seq 1 "$N"); do insert "$RW1" "$i" && ok=$((ok + 1)); done
if [ "$ok" = "$N" ]; then pass "$N writes acknowledged through proxy1"; else fatal "only $ok of $N writes acknowledged through proxy1"; fi

out="$(count_rows "$RW2")"
if [ "$out" = "$N:$N" ]; then pass "proxy2 reaches the same master ($out rows:max)"; else fail "proxy2 read: '$out', want '$N:$N'"; fi

ro_is_standby() { [ "$(sql "$RO1" "SELECT pg_is_in_recovery()::text || ':' || (SELECT count(*) FROM compose_test)")" = "true:$N" ]; }
if wait_for 30 "read-only port serves a standby" ro_is_standby; then
  pass "proxy1 read-only port serves a standby with every row"
else
  fail "proxy1 read-only port: $(sql "$RO1" "SELECT pg_is_in_recovery()")"
fi

# Asynchronous replication (the example's spec) may lose the last writes acknowledged just before
# a crash; to test failover itself, let the standbys replay everything first.
if wait_for "$CATCHUP_TIMEOUT" "standbys caught up" standbys_caught_up; then
  pass "standbys caught up (lag 0) within ${WAITED}s"
else
  fail "standbys not caught up within ${CATCHUP_TIMEOUT}s"
fi

# ---- 6: kill the master -------------------------------------------------------------------------

master="$(jq_status '.cluster.master_keeper_uid')"
case " ${KEEPERS[*]} " in *" $master "*) ;; *) fatal "master keeper uid '$master' is not one of ${KEEPERS[*]}" ;; esac
master_cid="$(compose ps -q "$master")"
log "killing the master: service $master (container ${master_cid:0:12})"
kill_at=$SECONDS
docker kill "$master_cid" >/dev/null || fatal "docker kill $master"
pass "master $master killed"

# Writes go on through proxy1: the first one that is acknowledged after the kill.
next=$((N + 1))
resumed() { insert "$RW1" "$next"; }
if wait_for "$FAILOVER_TIMEOUT" "a write through proxy1 after the kill" resumed; then
  pass "writes resumed through proxy1 $((SECONDS - kill_at))s after the kill (bound ${FAILOVER_TIMEOUT}s)"
else
  fatal "no write accepted through proxy1 within ${FAILOVER_TIMEOUT}s of the kill"
fi

new_master="$(jq_status '.cluster.master_keeper_uid')"
if [ -n "$new_master" ] && [ "$new_master" != null ] && [ "$new_master" != "$master" ]; then
  pass "new master is $new_master (was $master)"
else
  fail "master after failover is '$new_master' (killed: $master)"
fi

# A container killed with SIGKILL stays down despite `restart: unless-stopped` (the README relies
# on it): the failover above happened without the old master.
if [ "$(docker inspect -f '{{.State.Running}}' "$master_cid")" = false ]; then
  pass "killed master stays down (restart policy does not revive it)"
else
  fail "killed master $master was restarted by Docker"
fi

# More writes, through both proxies, then every acknowledged row must be there.
M=$((N + 20))
ok=0
for i in $(seq $((next + 1)) "$M"); do
  if [ $((i % 2)) = 0 ]; then insert "$RW1" "$i" && ok=$((ok + 1)); else insert "$RW2" "$i" && ok=$((ok + 1)); fi
done
if [ "$ok" = $((M - next)) ]; then pass "$ok more writes through proxy1 and proxy2 on the new master"; else fail "only $ok of $((M - next)) writes after failover"; fi

missing="$(sql "$RW2" "SELECT count(*) FROM generate_series(1, $M) g WHERE g NOT IN (SELECT id FROM compose_test)")"
if [ "$missing" = 0 ]; then
  pass "all $M acknowledged rows present after failover (none lost)"
else
  fail "$missing of $M acknowledged rows missing after failover"
fi

# ---- 7: the old master comes back as a standby --------------------------------------------------

log "starting $master again"
compose start "$master" >/dev/null 2>&1 || fail "compose start $master"
old_is_standby() {
  status_json | jq -e --arg k "$master" '
    .keepers[] | select(.uid == $k) | .role == "standby" and .healthy and .pg_healthy and .lag == 0' >/dev/null
}
if wait_for "$REJOIN_TIMEOUT" "$master healthy standby" old_is_standby; then
  pass "old master $master rejoined as a healthy standby within ${WAITED}s"
else
  fail "old master $master did not rejoin as a standby within ${REJOIN_TIMEOUT}s"
fi
local_count() {
  [ "$(compose exec -T "$master" psql -h /stolon-data -p 5432 -X -At \
        -c "SELECT count(*) FROM compose_test" 2>/dev/null | tr -d '\r')" = "$M" ]
}
if wait_for 30 "$master has every row" local_count; then
  pass "$master has all $M rows, including those written while it was down"
else
  fail "$master does not have all $M rows"
fi

# The one-shot init is idempotent: a second run leaves the cluster alone.
out="$(compose run --rm -T stolonctl-init 2>&1 | tail -n 1)"
if [[ "$out" == *"already initialized"* ]]; then pass "stolonctl-init is idempotent"; else fail "second stolonctl-init: $out"; fi

phase_secs[test]=$((SECONDS - test_start))
log "phases: binaries ${phase_secs[binaries]}s, base image ${phase_secs[base_image]}s, image ${phase_secs[image]}s, compose test ${phase_secs[test]}s"
[ "$failed" -eq 0 ]
