# Sourced by scripts/test.sh and scripts/demo.sh: installs from Debian what they need and is
# missing, and names what it cannot install.
#
#   stolon_prerequisites SCRIPT PG_BIN_DIR
#
# SCRIPT prefixes the error messages; PG_BIN_DIR is where postgres must be (postgresql-15 is
# installed when it is not). Needs root only when something is missing.
stolon_prerequisites() {
  local script=$1 pg_bin=$2
  # The one prerequisite not installed here: Debian 12's own cargo (1.63) is older than the
  # workspace's rust-version.
  if ! command -v cargo >/dev/null 2>&1; then
    echo "$script: cargo not found: install a Rust toolchain (1.80 or newer) with rustup first" >&2
    return 1
  fi
  local missing=()
  command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
  command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
  # etcd-client's build needs the well-known protos (google/protobuf/*.proto), which are only a
  # recommendation of protobuf-compiler: --no-install-recommends leaves them out.
  [ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
  [ -x "$pg_bin/postgres" ] || missing+=(postgresql-15)
  command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
  command -v jq >/dev/null 2>&1 || missing+=(jq)
  # tests/tests/safety_ops.rs routes through haproxy with the keepers' /primary check.
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  if [ ${#missing[@]} -gt 0 ]; then
    printf '==> installing %s\n' "${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
      echo "$script: need root to apt-get install ${missing[*]} (or install them yourself)" >&2
      return 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
      { echo "$script: apt-get install ${missing[*]} failed" >&2; return 1; }
  fi
  if ! id postgres >/dev/null 2>&1; then
    echo "$script: the postgres OS user is missing (install postgresql-15)" >&2
    return 1
  fi
}
