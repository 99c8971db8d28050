#!/usr/bin/env bash
# Builds the local base image `stolon-base:bookworm` from Debian mirrors alone, for machines that
# cannot pull from any container registry. It is a Debian 12 (bookworm) minbase root filesystem made
# with debootstrap, plus:
#   postgresql-15   the server binaries in /usr/lib/postgresql/15/bin and the `postgres` OS user
#                   (no cluster is created: the keeper runs initdb itself)
#   etcd-server     the `etcd` binary, so the same image can run the compose example's etcd members
#   ca-certificates, procps, iproute2, tini
# then `docker import`s it. It plays the role of the official `postgres:15-bookworm` image as the
# Dockerfile's BASE_IMAGE (same PostgreSQL paths, same `postgres` user name).
#
# Idempotent: does nothing when the image already exists (set STOLON_BASE_REBUILD=1 to rebuild).
# Needs root (debootstrap, chroot) and a Docker engine. Takes a few minutes, mostly downloads.
#
# Environment:
#   STOLON_BASE_IMAGE     image name (default stolon-base:bookworm)
#   STOLON_BASE_REBUILD=1 rebuild even if the image exists
#   DEBIAN_MIRROR         Debian mirror (default http://deb.debian.org/debian)
#   DEBIAN_SECURITY_MIRROR security mirror (default http://deb.debian.org/debian-security)
set -euo pipefail

IMAGE="${STOLON_BASE_IMAGE:-stolon-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
SUITE=bookworm
PACKAGES=(postgresql-15 etcd-server ca-certificates procps iproute2 tini)

log() { printf '==> %s\n' "$*"; }
die() { printf 'build-base-image.sh: %s\n' "$*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no usable Docker engine (docker info failed)"
if [ "${STOLON_BASE_REBUILD:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE exists, nothing to do (STOLON_BASE_REBUILD=1 rebuilds it)"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and chroot)"
if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
    die "cannot install debootstrap (apt-get install debootstrap)"
fi

# The root filesystem is built under /var/tmp (not a tmpfs /tmp: it is a few hundred MB).
WORK="$(mktemp -d /var/tmp/stolon-base.XXXXXX)"
ROOTFS="$WORK/rootfs"
cleanup() {
  # Unmount what we mounted inside the chroot before removing anything, and never cross into
  # another file system while removing.
  if mountpoint -q "$ROOTFS/proc" 2>/dev/null; then umount -l "$ROOTFS/proc" || true; fi
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

start=$SECONDS
log "debootstrap $SUITE (minbase) from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
  tail -n 30 "$WORK/debootstrap.log" >&2
  die "debootstrap failed"
}

# Service scripts must not start anything inside the chroot (policy-rc.d exit 101 = "not allowed").
# Kept in the image, as Docker's own Debian images do, so derived images can apt-get install too.
cat >"$ROOTFS/usr/sbin/policy-rc.d" <<'EOF'
#!/bin/sh
exit 101
EOF
chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"

# postgresql-common would create a "15 main" cluster on install; the keeper runs initdb itself.
mkdir -p "$ROOTFS/etc/postgresql-common"
echo "create_main_cluster = false" >"$ROOTFS/etc/postgresql-common/createcluster.conf"

# Leave out documentation, man pages and translations: they only make the image bigger.
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/01-stolon-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat >"$ROOTFS/etc/apt/apt.conf.d/01-stolon-minimal" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF

cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF

# The postgres user as 999:999, as in the official postgres images: the Helm chart and
# Kubernetes' runAsUser/fsGroup name the uid, not the user, and postgresql-common would otherwise
# pick whatever system uid is free (around 100). Its postinst keeps an existing user.
chroot "$ROOTFS" groupadd -r -g 999 postgres || die "cannot create the postgres group (gid 999)"
chroot "$ROOTFS" useradd -r -g postgres -u 999 -d /var/lib/postgresql -s /bin/bash postgres ||
  die "cannot create the postgres user (uid 999)"

log "installing ${PACKAGES[*]}"
mount -t proc proc "$ROOTFS/proc"
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -c "apt-get update -qq && apt-get install -y -qq ${PACKAGES[*]} && apt-get clean" \
  >"$WORK/apt.log" 2>&1 || {
  tail -n 30 "$WORK/apt.log" >&2
  die "apt-get install in the chroot failed"
}
umount "$ROOTFS/proc"

# Sanity: what the image promises.
[ -x "$ROOTFS/usr/lib/postgresql/15/bin/postgres" ] || die "postgres binary missing in the rootfs"
[ -x "$ROOTFS/usr/bin/etcd" ] || die "etcd binary missing in the rootfs"
[ "$(chroot "$ROOTFS" id -u postgres):$(chroot "$ROOTFS" id -g postgres)" = 999:999 ] ||
  die "the postgres user in the rootfs is not 999:999"

# Drop what a container does not need: package lists, caches, logs of the install.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/*.log \
  "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*

log "importing into docker as $IMAGE"
# /dev, /proc and /sys are provided by the container runtime: ship them empty.
tar --numeric-owner -C "$ROOTFS" --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* -c . |
  docker import \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'LABEL org.opencontainers.image.description="Debian bookworm + postgresql-15 + etcd (stolon-rs local base)"' \
    --change 'CMD ["bash"]' \
    - "$IMAGE" >/dev/null

log "built $IMAGE in $((SECONDS - start))s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1000000}'))"
