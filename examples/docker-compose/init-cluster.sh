#!/usr/bin/env bash
# One-shot initialization of the cluster, run by the stolonctl-init service.
# Idempotent: when the store already has clusterdata it does nothing, so every
# `docker compose up` may run it. It waits (bounded) for the etcd cluster to answer.
set -u

spec="${STOLON_INIT_SPEC_FILE:-/etc/stolon/cluster-spec.json}"

for _ in $(seq 1 90); do
  if out="$(stolonctl status 2>&1)"; then
    echo "stolonctl-init: cluster ${STOLONCTL_CLUSTER_NAME} already initialized, nothing to do"
    exit 0
  fi
  case "$out" in
    *"no clusterdata"*)
      # `init` refuses to replace an existing cluster (no -y), so a concurrent init is harmless.
      if stolonctl init -f "$spec"; then
        echo "stolonctl-init: cluster ${STOLONCTL_CLUSTER_NAME} initialized with $spec"
        exit 0
      fi
      ;;
    *) echo "stolonctl-init: store not ready yet: ${out##*$'\n'}" ;;
  esac
  sleep 2
done
echo "stolonctl-init: gave up after 3 minutes" >&2
exit 1
