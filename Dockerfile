# stolon-rs container image: the four binaries (stolon-keeper, stolon-sentinel, stolon-proxy,
# stolonctl) on top of a PostgreSQL 15 image, running as the non-root `postgres` user.
#
# Two ways to build it (see examples/docker-compose/README.md):
#
#   1. Compile inside Docker (the default; needs BuildKit, the default builder since Docker 23):
#        docker build -t stolon-rs:local .
#      Stage `build` (FROM $BUILDER_IMAGE, default rust:1-bookworm) compiles the binaries in release
#      mode; the final stage (FROM $BASE_IMAGE, default postgres:15-bookworm) copies them in.
#
#   2. Use binaries already built on the host (`cargo build --release`), no Rust image needed:
#        mkdir -p /tmp/stolon-ctx
#        cp target/release/{stolon-keeper,stolon-sentinel,stolon-proxy,stolonctl} /tmp/stolon-ctx/
#        docker build --target prebuilt -f Dockerfile -t stolon-rs:local /tmp/stolon-ctx
#      The build context is that small directory holding only the four binaries. The host must
#      build them against a glibc no newer than the base image's (Debian 12 / bookworm: 2.36).
#
# Build args:
#   BASE_IMAGE     runtime base with PostgreSQL 15 in /usr/lib/postgresql/15/bin and a `postgres`
#                  user (default postgres:15-bookworm; scripts/build-base-image.sh builds an
#                  equivalent `stolon-base:bookworm` from Debian mirrors alone)
#   BUILDER_IMAGE  Rust toolchain image for the compile path (default rust:1-bookworm)
#   PG_MAJOR       PostgreSQL major version of BASE_IMAGE (default 15)
#
# The image has no entrypoint: the command picks the component, e.g. `stolon-keeper`,
# `stolon-sentinel`, `stolon-proxy` or `stolonctl status`. Every flag can be given as an env var
# (STKEEPER_*, STSENTINEL_*, STPROXY_*, STOLONCTL_*). Run it with an init process (`docker run
# --init`, compose `init: true`) so that orphaned processes are reaped.
#
# Stage order matters for the legacy (non-BuildKit) builder, which builds every stage up to the
# target: `runtime` and `prebuilt` come first so `--target prebuilt` never needs BUILDER_IMAGE.

ARG BASE_IMAGE=postgres:15-bookworm
ARG BUILDER_IMAGE=rust:1-bookworm

# ---------------------------------------------------------------------------------------------
# runtime: what every final image shares (no stolon binaries yet).
FROM ${BASE_IMAGE} AS runtime
ARG PG_MAJOR=15
USER root
# The official postgres image's entrypoint runs initdb and starts postgres by itself; here the
# keeper owns PostgreSQL (initdb, configuration, start and stop), so there is no entrypoint.
ENTRYPOINT []
# /stolon-data is the keeper's --data-dir (mount a volume there); it must belong to postgres,
# which named volumes inherit from the image on first use. The official image declares a VOLUME
# at /var/lib/postgresql/data that we leave unused.
RUN set -eu; \
    id postgres >/dev/null; \
    test -x "/usr/lib/postgresql/${PG_MAJOR}/bin/postgres"; \
    mkdir -p /stolon-data /etc/stolon; \
    chown postgres:postgres /stolon-data; \
    chmod 0700 /stolon-data
ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    STKEEPER_PG_BIN_PATH=/usr/lib/postgresql/${PG_MAJOR}/bin \
    STKEEPER_DATA_DIR=/stolon-data
# The keeper and the proxy stop cleanly on SIGTERM (the official postgres image says SIGINT).
STOPSIGNAL SIGTERM
# 5432: postgres (keeper) or the proxy's read-write port; 5433: the proxy's read-only port;
# 8080: --metrics-listen-address as the examples set it (/metrics and probes).
EXPOSE 5432 5433 8080
WORKDIR /stolon-data

# ---------------------------------------------------------------------------------------------
# prebuilt: the binaries come from the build context (a directory holding just the four of them).
# USER and CMD come first so that new binaries only redo the last two (cached) steps.
FROM runtime AS prebuilt
USER postgres
CMD ["stolon-keeper", "--help"]
COPY stolon-keeper stolon-sentinel stolon-proxy stolonctl /usr/local/bin/
# Fails early on binaries that cannot run here (e.g. built against a newer glibc).
RUN for b in stolon-keeper stolon-sentinel stolon-proxy stolonctl; do "$b" --version; done

# ---------------------------------------------------------------------------------------------
# build: compiles the four binaries in release mode. The etcd client's build script needs protoc
# and the well-known .proto files (google/protobuf/*.proto, in libprotobuf-dev).
FROM ${BUILDER_IMAGE} AS build
RUN set -eu; \
    apt-get update; \
    apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev; \
    rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN set -eu; \
    cargo build --release --locked \
      -p stolon-keeper -p stolon-sentinel -p stolon-proxy -p stolonctl; \
    mkdir -p /out; \
    cp target/release/stolon-keeper target/release/stolon-sentinel \
      target/release/stolon-proxy target/release/stolonctl /out/

# ---------------------------------------------------------------------------------------------
# The default target: the runtime with the binaries compiled in stage `build`.
FROM runtime AS stolon
USER postgres
CMD ["stolon-keeper", "--help"]
COPY --from=build /out/ /usr/local/bin/
RUN for b in stolon-keeper stolon-sentinel stolon-proxy stolonctl; do "$b" --version; done
