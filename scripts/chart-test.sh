#!/usr/bin/env bash
# Tests the Helm chart charts/stolon offline (no Kubernetes API server, no helm binary):
#   1. lints it strictly (warnings are failures) with Helm v4's own linter, through the
#      helm-python-sdk package (Helm's Go SDK as a shared library, driven from Python);
#   2. renders it with the default values and with several non-default value sets, and checks
#      that invalid values are refused;
#   3. validates every rendered manifest against the Kubernetes OpenAPI schemas with
#      `kubernetes-validate --strict` (unknown fields are errors), for the oldest and the newest
#      Kubernetes versions the validator ships; CRD kinds (ServiceMonitor) have no schema there
#      and are skipped with a note;
#   4. asserts properties of the rendered objects (probes, PVCs, init job, secrets, services, ...).
#
# Both PyPI packages are installed into a virtualenv under
# ${XDG_CACHE_HOME:-$HOME/.cache}/stolon-chart-venv when missing.
# Prints one line per check and, last, "N passed, M failed"; exits non-zero on any failure.
#
# Environment:
#   STOLON_CHART_VENV   the virtualenv to use (default: the path above)
#   STOLON_CHART_KEEP=1 keep the rendered manifests (their directory is printed)
set -euo pipefail
cd "$(dirname "$0")/.."

CHART_DIR=charts/stolon
VENV="${STOLON_CHART_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/stolon-chart-venv}"

log() { printf '\n==> %s\n' "$*"; }

if ! "$VENV/bin/python" -c 'import helm_python, kubernetes_validate' >/dev/null 2>&1; then
  log "installing helm-python-sdk and kubernetes-validate into $VENV"
  # helm-python-sdk is alpha: stay on the API this script was written against.
  if ! { python3 -m venv --clear "$VENV" &&
         "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
           'helm-python-sdk>=0.2.2,<0.3' 'kubernetes-validate>=1.37'; }; then
    echo "FAIL cannot install helm-python-sdk and kubernetes-validate into $VENV" >&2
    echo "0 passed, 1 failed"
    exit 1
  fi
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/stolon-chart-test.XXXXXX")"
if [ "${STOLON_CHART_KEEP:-}" = 1 ]; then
  echo "rendered manifests are kept in $WORK"
else
  trap 'rm -rf "$WORK"' EXIT
fi

log "lint, render, validate and check $CHART_DIR"
set +e
"$VENV/bin/python" - "$CHART_DIR" "$WORK" "$VENV/bin/kubernetes-validate" <<'PY' | tee "$WORK/output.txt"
import base64
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import traceback

import helm_python as helm
import kubernetes_validate.utils as kv_utils
import yaml

CHART, WORK, KV = sys.argv[1], sys.argv[2], sys.argv[3]
RELEASE, NAMESPACE = "demo", "stolon-test"
FULL = f"{RELEASE}-stolon"
# Kinds without a schema in kubernetes-validate (CRDs): skipped, with a note.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
# The oldest and newest Kubernetes the validator ships (the chart says kubeVersion >=1.25).
KUBE_VERSIONS = [kv_utils.all_versions()[0], kv_utils.latest_version()]

passed = failed = 0


def check(name, fn):
    """Runs one check: fn returns None (pass) or raises AssertionError / any error (fail)."""
    global passed, failed
    try:
        fn()
    except AssertionError as e:
        failed += 1
        print(f"FAIL {name}: {e}")
        return False
    except Exception as e:  # a crash in a check is a failure of that check, not of the run
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")
        traceback.print_exc(limit=3)
        return False
    passed += 1
    print(f"ok   {name}")
    return True


# ---------------------------------------------------------------- value sets
SU_PW = "Su-Pw-7f3a9c1e-plain"
REPL_PW = "Repl-Pw-2b8d4e6f-plain"
VALUE_SETS = {
    "default": {},
    # External etcd with TLS, an existing Secret, the ServiceMonitor, required anti-affinity.
    "external": {
        "etcd": {"enabled": False},
        "store": {
            "endpoints": "https://etcd-a.example:2379,https://etcd-b.example:2379",
            "prefix": "prod/stolon",
            "timeout": "3s",
            "tls": {"enabled": True, "secretName": "etcd-client-tls"},
        },
        "auth": {"existingSecret": "my-pg-secret", "superuserPasswordKey": "su",
                 "replicationPasswordKey": "repl"},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "keeper": {"podAntiAffinity": "hard", "replicas": 3,
                   "persistence": {"storageClass": "fast-ssd", "size": "50Gi"}},
        "sentinel": {"podAntiAffinity": "hard", "replicas": 3},
        "proxy": {"podAntiAffinity": "hard", "tcpKeepaliveIdle": 0, "tcpKeepaliveCount": 4,
                  "tcpKeepaliveInterval": 10, "service": {"type": "LoadBalancer"}},
        "image": {"repository": "registry.example/stolon-rs", "tag": "1.2.3",
                  "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "clusterName": "payments",
        "logFormat": "json",
    },
    # No read-only port, explicit passwords, no PDBs, no PVCs, no ServiceAccount, sentinel-side
    # initialization, anti-affinity off, a bigger cluster spec, no init job.
    "minimal": {
        "proxy": {"roPort": {"enabled": False}, "pdb": {"enabled": False},
                  "podAntiAffinity": "none"},
        "keeper": {"pdb": {"enabled": False}, "persistence": {"enabled": False},
                   "pgBinPath": "/usr/lib/postgresql/16/bin", "uidFromPodName": False,
                   "extraEnv": [{"name": "STKEEPER_PG_ADVERTISE_PORT", "value": "5432"}]},
        "sentinel": {"pdb": {"enabled": False}, "initialClusterSpec": True},
        "etcd": {"pdb": {"enabled": False}, "persistence": {"enabled": False}, "replicas": 5},
        "serviceAccount": {"create": False},
        "auth": {"superuserPassword": SU_PW, "replicationPassword": REPL_PW},
        "initJob": {"enabled": False},
        "clusterSpec": {"initMode": "new", "synchronousReplication": True,
                        "minSynchronousStandbys": 1, "pgParameters": {"max_connections": "200"}},
    },
    # Init job on upgrades too, sentinel initialization as well (both are create-if-absent).
    "upgrade-hook": {
        "initJob": {"hooks": "post-install,post-upgrade"},
        "sentinel": {"initialClusterSpec": True},
        "fullnameOverride": "pg",
    },
}

# ---------------------------------------------------------------- helpers


def lint_problems(path, values=None):
    report = helm.lint(path, values, strict=True, namespace=NAMESPACE)
    problems = [f"[{m['severity']}] {m['path']}: {m['error']}" for m in report.get("messages", [])
                if m.get("severity", 0) >= 2]
    problems += [str(e) for e in report.get("errors") or []]
    return report, problems


def render(values):
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def documents(manifests):
    """(template, object) for every non-empty YAML document of the render (NOTES.txt aside)."""
    out = []
    for template, text in sorted(manifests.items()):
        if not template.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((template, doc))
    return out


def find(objs, kind, name=None, component=None):
    found = [o for o in objs if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)
             and (component is None
                  or o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component)]
    return found


def one(objs, kind, name=None, component=None):
    found = find(objs, kind, name, component)
    assert len(found) == 1, f"expected one {kind} {name or component or ''}, found {len(found)}"
    return found[0]


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def container(obj, name):
    cs = [c for c in pod_spec(obj)["containers"] if c["name"] == name]
    assert len(cs) == 1, f"{obj['kind']} {obj['metadata']['name']}: no container {name}"
    return cs[0]


def env_map(c):
    return {e["name"]: e for e in c.get("env", [])}


def env_value(c, name):
    e = env_map(c).get(name)
    assert e is not None, f"container {c['name']}: no env {name}"
    return e.get("value")


def merged(base, override):
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def workloads(objs):
    return [o for o in objs if o["kind"] in ("StatefulSet", "Deployment", "Job")]


# ---------------------------------------------------------------- values.yaml documentation


def values_documented():
    lines = open(os.path.join(CHART, "values.yaml")).read().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z0-9_.-]+):", line)
        if not m:
            continue
        # The key's documentation: a comment on the line above (at the same indentation).
        above = lines[i - 1].strip() if i > 0 else ""
        if not above.startswith("#") and "#" not in line.split(":", 1)[1]:
            undocumented.append(f"line {i + 1}: {m.group(2)}")
    # Keys inside a list item or a value block (e.g. resources.requests.cpu) count as documented
    # by the comment of the key that opens the block.
    allowed_parents = ("requests:", "limits:", "resources:")
    real = []
    for entry in undocumented:
        n = int(entry.split()[1].rstrip(":")) - 1
        indent = len(lines[n]) - len(lines[n].lstrip())
        j = n - 1
        while j >= 0 and (not lines[j].strip() or lines[j].strip().startswith("#")
                          or len(lines[j]) - len(lines[j].lstrip()) >= indent):
            j -= 1
        parent = lines[j].strip() if j >= 0 else ""
        if parent.endswith(allowed_parents):
            continue
        real.append(entry)
    assert not real, "values.yaml keys without a comment: " + ", ".join(real)


check("values.yaml: every value has a comment", values_documented)

# ---------------------------------------------------------------- lint


def lint_default():
    report, problems = lint_problems(CHART)
    assert report.get("total_charts_linted") == 1, f"linted {report.get('total_charts_linted')}"
    assert not problems, "; ".join(problems)


check("helm lint --strict (default values)", lint_default)

for set_name, values in VALUE_SETS.items():
    if values:
        def lint_set(values=values):
            _, problems = lint_problems(CHART, values)
            assert not problems, "; ".join(problems)
        check(f"helm lint --strict ({set_name} values)", lint_set)


def lint_catches_errors():
    # The linter as driven here must see a broken chart: a template that does not parse.
    broken = os.path.join(WORK, "broken", "stolon")
    shutil.copytree(CHART, broken)
    with open(os.path.join(broken, "templates", "zz-broken.yaml"), "w") as f:
        f.write("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.nope\n")
    _, problems = lint_problems(broken)
    assert problems, "lint reported nothing for a template that does not parse"


check("helm lint --strict reports a broken template", lint_catches_errors)

# ---------------------------------------------------------------- render + schema validation

RENDERS = {}
for set_name, values in VALUE_SETS.items():
    def do_render(set_name=set_name, values=values):
        manifests = render(values)
        RENDERS[set_name] = (manifests, [o for _, o in documents(manifests)])
        assert RENDERS[set_name][1], "rendered no object"
    check(f"render ({set_name} values)", do_render)


def kubernetes_validate(set_name):
    manifests, _ = RENDERS[set_name]
    outdir = os.path.join(WORK, set_name)
    os.makedirs(outdir, exist_ok=True)
    files = []
    for template, obj in documents(manifests):
        def well_formed(obj=obj, template=template):
            for key in ("apiVersion", "kind", "metadata"):
                assert key in obj, f"{template}: object without {key}"
            assert obj["metadata"].get("name"), f"{template}: {obj['kind']} without a name"
        label = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if not check(f"[{set_name}] {label} is a well-formed object", well_formed):
            continue
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            print(f"note [{set_name}] {label}: {obj['apiVersion']} is a CRD kind that "
                  "kubernetes-validate has no schema for: schema validation skipped")
            continue
        path = os.path.join(outdir, f"{len(files):02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(obj, f, sort_keys=False)
        files.append((label, path))
    if not files:
        return
    cmd = [KV, "--strict"]
    for v in KUBE_VERSIONS:
        cmd += ["-k", v]
    proc = subprocess.run(cmd + [p for _, p in files], capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    for label, path in files:
        def validated(label=label, path=path):
            lines = [l for l in out.splitlines() if f" {path} " in f"{l} "]
            bad = [l for l in lines if not l.startswith("INFO")]
            assert not bad, "\n    ".join(bad)
            ok = [l for l in lines if l.startswith("INFO") and "passed" in l]
            assert len(ok) == len(KUBE_VERSIONS), (
                f"expected {len(KUBE_VERSIONS)} passes, got: {lines or out.strip()[-500:]}")
        check(f"[{set_name}] {label} passes kubernetes-validate --strict "
              f"(k8s {', '.join(KUBE_VERSIONS)})", validated)
    def exit_status():
        assert proc.returncode == 0, f"kubernetes-validate exited {proc.returncode}: {out[-2000:]}"
    check(f"[{set_name}] kubernetes-validate exit status", exit_status)


for set_name in VALUE_SETS:
    if set_name in RENDERS:
        kubernetes_validate(set_name)

# ---------------------------------------------------------------- assertions on the renders


def objs_of(set_name):
    assert set_name in RENDERS, f"no render of {set_name}"
    return RENDERS[set_name][1]


def values_of(set_name):
    with helm.Chart.load(CHART) as chart:
        return chart.merge_values(VALUE_SETS[set_name])


STANDARD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/component", "app.kubernetes.io/managed-by", "helm.sh/chart")


def a_standard_labels(set_name):
    def run():
        missing = []
        for o in objs_of(set_name):
            labels = o["metadata"].get("labels", {})
            lack = [l for l in STANDARD_LABELS if l not in labels]
            if lack:
                missing.append(f"{o['kind']}/{o['metadata']['name']}: {lack}")
            if o["kind"] in ("StatefulSet", "Deployment", "Job"):
                plabels = o["spec"]["template"]["metadata"]["labels"]
                lack = [l for l in STANDARD_LABELS if l not in plabels]
                if lack:
                    missing.append(f"{o['kind']}/{o['metadata']['name']} pods: {lack}")
                sel = o["spec"].get("selector", {}).get("matchLabels", {})
                for k, v in sel.items():
                    if plabels.get(k) != v:
                        missing.append(f"{o['kind']}/{o['metadata']['name']}: selector {k}={v} "
                                       "does not match its pods")
        assert not missing, "; ".join(missing)
    return run


def a_services_match(set_name):
    def run():
        objs = objs_of(set_name)
        problems = []
        for svc in find(objs, "Service"):
            sel = svc["spec"]["selector"]
            targets = [w for w in workloads(objs) if w["kind"] != "Job" and all(
                w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
            if len(targets) != 1:
                problems.append(f"Service {svc['metadata']['name']} selects {len(targets)} workloads")
                continue
            ports = {p["name"]: p for c in pod_spec(targets[0])["containers"]
                     for p in c.get("ports", [])}
            for p in svc["spec"]["ports"]:
                if p["targetPort"] not in ports:
                    problems.append(f"Service {svc['metadata']['name']} targets port "
                                    f"{p['targetPort']!r} that {targets[0]['metadata']['name']} lacks")
        for w in workloads(objs):
            ps = pod_spec(w)
            vols = {v["name"] for v in ps.get("volumes", [])}
            vols |= {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
            for c in ps["containers"]:
                for m in c.get("volumeMounts", []):
                    if m["name"] not in vols:
                        problems.append(f"{w['metadata']['name']}/{c['name']} mounts unknown "
                                        f"volume {m['name']}")
                names = {p["name"] for p in c.get("ports", [])}
                for probe in ("readinessProbe", "livenessProbe"):
                    pr = c.get(probe) or {}
                    port = (pr.get("httpGet") or pr.get("tcpSocket") or {}).get("port")
                    if isinstance(port, str) and port not in names:
                        problems.append(f"{w['metadata']['name']}/{c['name']} {probe} on unknown "
                                        f"port {port}")
        assert not problems, "; ".join(problems)
    return run


def a_keeper(set_name):
    def run():
        objs = objs_of(set_name)
        v = values_of(set_name)
        sts = one(objs, "StatefulSet", component="keeper")
        c = container(sts, "keeper")
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        rp = c.get("readinessProbe", {})
        assert rp.get("httpGet", {}).get("path") == "/health", f"readinessProbe: {rp}"
        assert rp["httpGet"]["port"] == "metrics" and "metrics" in ports, "readiness not on metrics"
        assert env_value(c, "STKEEPER_METRICS_LISTEN_ADDRESS") == f"0.0.0.0:{ports['metrics']}", \
            "--metrics-listen-address is not the probed port"
        assert c.get("livenessProbe"), "no livenessProbe"
        assert pod_spec(sts)["terminationGracePeriodSeconds"] >= 60, "grace period too short"
        sc = pod_spec(sts)["securityContext"]
        assert sc.get("runAsNonRoot") is True and sc.get("fsGroup") == 999, f"securityContext {sc}"
        assert sts["spec"]["serviceName"] == one(objs, "Service", name=sts["metadata"]["name"])[
            "metadata"]["name"], "serviceName is not the keepers' headless Service"
        env = env_map(c)
        adv = env["STKEEPER_PG_ADVERTISE_ADDRESS"]
        assert adv.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP", \
            f"--pg-advertise-address: {adv}"
        if v["keeper"]["uidFromPodName"]:
            uid = env.get("STKEEPER_UID", {})
            assert uid.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name", \
                f"--uid: {uid}"
        else:
            assert "STKEEPER_UID" not in env, "STKEEPER_UID set although uidFromPodName is false"
        data_dir = env_value(c, "STKEEPER_DATA_DIR")
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        # A subdirectory of the data volume: the keeper chmods its data dir to 0700, which it
        # cannot do on a volume root that belongs to root.
        parent = data_dir.rsplit("/", 1)[0]
        assert mounts.get(parent) == "data" and data_dir != parent, \
            f"data dir {data_dir} is not a subdirectory of the data volume ({mounts})"
        if v["keeper"]["persistence"]["enabled"]:
            vct = sts["spec"]["volumeClaimTemplates"]
            assert [t["metadata"]["name"] for t in vct] == ["data"], "no data volumeClaimTemplate"
            req = vct[0]["spec"]["resources"]["requests"]["storage"]
            assert req == v["keeper"]["persistence"]["size"], f"PVC size {req}"
            sclass = v["keeper"]["persistence"]["storageClass"]
            if sclass:
                assert vct[0]["spec"].get("storageClassName") == sclass, "storageClass"
            else:
                assert "storageClassName" not in vct[0]["spec"], "storageClassName set"
        else:
            assert "volumeClaimTemplates" not in sts["spec"], "PVCs although persistence is off"
            assert any(vol["name"] == "data" and "emptyDir" in vol
                       for vol in pod_spec(sts)["volumes"]), "no emptyDir data volume"
        # Password files come from the Secret's volume.
        secret_vol = [vol for vol in pod_spec(sts)["volumes"] if vol["name"] == "secrets"][0]
        secret_dir = [m["mountPath"] for m in c["volumeMounts"] if m["name"] == "secrets"][0]
        files = {f"{secret_dir}/{it['path']}": it["key"] for it in secret_vol["secret"]["items"]}
        su_file = env_value(c, "STKEEPER_PG_SU_PASSWORDFILE")
        repl_file = env_value(c, "STKEEPER_PG_REPL_PASSWORDFILE")
        assert files.get(su_file) == v["auth"]["superuserPasswordKey"], f"su file {su_file}: {files}"
        assert files.get(repl_file) == v["auth"]["replicationPasswordKey"], f"repl file {repl_file}"
        expected_secret = v["auth"]["existingSecret"] or FULL_NAME(set_name)
        assert secret_vol["secret"]["secretName"] == expected_secret, \
            f"secret volume {secret_vol['secret']['secretName']} != {expected_secret}"
        assert env_value(c, "STKEEPER_PG_SU_USERNAME") != env_value(c, "STKEEPER_PG_REPL_USERNAME")
        if v["keeper"]["pgBinPath"]:
            assert env_value(c, "STKEEPER_PG_BIN_PATH") == v["keeper"]["pgBinPath"]
        assert c["image"] == f"{v['image']['repository']}:{v['image']['tag'] or '0.1.0'}", c["image"]
        assert c["imagePullPolicy"] == v["image"]["pullPolicy"]
        assert sts["spec"]["replicas"] == v["keeper"]["replicas"]
    return run


def FULL_NAME(set_name):
    return VALUE_SETS[set_name].get("fullnameOverride") or FULL


def a_anti_affinity(set_name, expected):
    def run():
        objs = objs_of(set_name)
        for comp in ("keeper", "sentinel", "proxy"):
            w = [o for o in workloads(objs)
                 if o["metadata"]["labels"]["app.kubernetes.io/component"] == comp][0]
            aff = pod_spec(w).get("affinity", {}).get("podAntiAffinity", {})
            if expected == "none":
                continue
            key = {"soft": "preferredDuringSchedulingIgnoredDuringExecution",
                   "hard": "requiredDuringSchedulingIgnoredDuringExecution"}[expected]
            assert set(aff) == {key}, f"{comp}: podAntiAffinity {sorted(aff)} is not {key}"
            term = aff[key][0]
            term = term.get("podAffinityTerm", term)
            sel = term["labelSelector"]["matchLabels"]
            assert sel.get("app.kubernetes.io/component") == comp, f"{comp}: selector {sel}"
            assert term["topologyKey"] == "kubernetes.io/hostname"
    return run


def a_init_job(set_name):
    def run():
        objs = objs_of(set_name)
        v = values_of(set_name)
        jobs = find(objs, "Job", component="init")
        if not v["initJob"]["enabled"]:
            assert not jobs, "init job rendered although initJob.enabled is false"
            return
        job = one(objs, "Job", component="init")
        ann = job["metadata"]["annotations"]
        hooks = ann.get("helm.sh/hook", "").split(",")
        assert "post-install" in hooks, f"hooks {hooks}"
        assert "before-hook-creation" in ann.get("helm.sh/hook-delete-policy", "")
        c = container(job, "init")
        script = " ".join(c.get("command", []) + c.get("args", []))
        assert "init" in script, "the init job's command does not contain init"
        # The commands the script runs (not the ones it only echoes).
        runs = [l.strip() for l in script.splitlines()
                if "stolonctl " in l and not l.strip().startswith(("echo", "printf", "#"))]
        status_at = [i for i, l in enumerate(runs) if "stolonctl status" in l]
        init_at = [i for i, l in enumerate(runs) if "stolonctl init" in l]
        assert status_at and init_at, f"stolonctl status and init are not both run: {runs}"
        assert max(status_at) < min(init_at), "stolonctl status must run before stolonctl init"
        for i in init_at:
            assert not re.search(r"(^|\s)(-y|--yes)(\s|$)", runs[i]), f"init forced: {runs[i]}"
        assert "no clusterdata" in script, "init is not conditional on the cluster having no clusterdata"
        assert env_value(c, "STOLONCTL_STORE_ENDPOINTS") == expected_endpoints(set_name)
        spec_cm = one(objs, "ConfigMap", component="cluster-spec")
        vol = [x for x in pod_spec(job)["volumes"] if x["name"] == "cluster-spec"][0]
        assert vol["configMap"]["name"] == spec_cm["metadata"]["name"]
        mount = [m for m in c["volumeMounts"] if m["name"] == "cluster-spec"][0]["mountPath"]
        assert f"{mount}/cluster-spec.json" in script, "the job does not read the mounted spec"
        assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")
    return run


def a_cluster_spec(set_name):
    def run():
        objs = objs_of(set_name)
        cm = one(objs, "ConfigMap", component="cluster-spec")
        spec = json.loads(cm["data"]["cluster-spec.json"])
        assert spec == values_of(set_name)["clusterSpec"], f"spec {spec}"
        assert spec.get("initMode") in ("new", "existing", "pitr")
    return run


def a_no_inlined_secrets(set_name):
    def run():
        objs = objs_of(set_name)
        manifests, _ = RENDERS[set_name]
        secrets = set()
        for s in find(objs, "Secret"):
            for val in (s.get("data") or {}).values():
                secrets.add(base64.b64decode(val).decode())
            secrets.update((s.get("stringData") or {}).values())
        v = values_of(set_name)
        for pw in (v["auth"]["superuserPassword"], v["auth"]["replicationPassword"]):
            if pw:
                secrets.add(pw)
        problems = []
        for w in workloads(objs):
            for c in pod_spec(w)["containers"] + pod_spec(w).get("initContainers", []):
                for e in c.get("env", []):
                    if "PASSWORD" in e["name"] and not e["name"].endswith("PASSWORDFILE"):
                        problems.append(f"{w['metadata']['name']}/{c['name']}: env {e['name']}")
                    if "value" in e and any(s and s in str(e["value"]) for s in secrets):
                        problems.append(f"{w['metadata']['name']}/{c['name']}: env {e['name']} "
                                        "holds a password")
                    if e.get("valueFrom", {}).get("secretKeyRef"):
                        problems.append(f"{w['metadata']['name']}/{c['name']}: env {e['name']} "
                                        "from a Secret (passwords go in files)")
                argv = " ".join(c.get("command", []) + c.get("args", []))
                if any(s and s in argv for s in secrets):
                    problems.append(f"{w['metadata']['name']}/{c['name']}: password on command line")
        # Plain-text passwords given as values appear nowhere in the render (only base64 in the Secret).
        for pw in (v["auth"]["superuserPassword"], v["auth"]["replicationPassword"]):
            if pw:
                for template, text in manifests.items():
                    if pw in text:
                        problems.append(f"{template}: plain-text password")
        assert not problems, "; ".join(problems)
    return run


def a_unique_env(set_name):
    """No container sets a variable twice: with a duplicate, which one wins is up to the
    consumer, and `helm upgrade`'s strategic merge of env lists misbehaves."""
    def run():
        problems = []
        for w in workloads(objs_of(set_name)):
            for c in pod_spec(w)["containers"] + pod_spec(w).get("initContainers", []):
                names = [e["name"] for e in c.get("env", [])]
                dups = sorted({n for n in names if names.count(n) > 1})
                if dups:
                    problems.append(f"{w['metadata']['name']}/{c['name']}: {', '.join(dups)}")
        assert not problems, "env set twice: " + "; ".join(problems)
    return run


def a_secret(set_name):
    def run():
        objs = objs_of(set_name)
        v = values_of(set_name)
        secrets = find(objs, "Secret")
        if v["auth"]["existingSecret"]:
            assert not secrets, "a Secret is rendered although auth.existingSecret is set"
            return
        s = one(objs, "Secret")
        data = {k: base64.b64decode(x).decode() for k, x in s["data"].items()}
        assert set(data) == {v["auth"]["superuserPasswordKey"], v["auth"]["replicationPasswordKey"]}
        for key, given in ((v["auth"]["superuserPasswordKey"], v["auth"]["superuserPassword"]),
                           (v["auth"]["replicationPasswordKey"], v["auth"]["replicationPassword"])):
            if given:
                assert data[key] == given, f"{key} is not the given password"
            else:
                assert len(data[key]) >= 16, f"{key}: generated password too short"
        assert data[v["auth"]["superuserPasswordKey"]] != data[v["auth"]["replicationPasswordKey"]]
        assert s["metadata"]["annotations"].get("helm.sh/resource-policy") == "keep"
    return run


def expected_endpoints(set_name):
    v = values_of(set_name)
    if v["etcd"]["enabled"]:
        return f"http://{FULL_NAME(set_name)}-etcd:{v['etcd']['clientPort']}"
    return v["store"]["endpoints"]


def a_store(set_name):
    def run():
        objs = objs_of(set_name)
        v = values_of(set_name)
        cluster = v["clusterName"] or FULL_NAME(set_name)
        prefixes = {"keeper": "STKEEPER", "sentinel": "STSENTINEL", "proxy": "STPROXY",
                    "init": "STOLONCTL"}
        for w in workloads(objs):
            comp = w["metadata"]["labels"]["app.kubernetes.io/component"]
            if comp not in prefixes:
                continue
            c = pod_spec(w)["containers"][0]
            p = prefixes[comp]
            assert env_value(c, f"{p}_STORE_ENDPOINTS") == expected_endpoints(set_name), comp
            assert env_value(c, f"{p}_CLUSTER_NAME") == cluster, comp
            assert env_value(c, f"{p}_STORE_PREFIX") == v["store"]["prefix"], comp
            assert env_value(c, f"{p}_STORE_BACKEND") == v["store"]["backend"], comp
            if v["store"]["tls"]["enabled"] and not v["etcd"]["enabled"]:
                for flag in ("STORE_CA_FILE", "STORE_CERT_FILE", "STORE_KEY"):
                    path = env_value(c, f"{p}_{flag}")
                    assert any(path.startswith(m["mountPath"] + "/")
                               for m in c.get("volumeMounts", []) if m["name"] == "store-tls"), \
                        f"{comp}: {flag} {path} is not in the mounted TLS secret"
        etcd = find(objs, "StatefulSet", component="etcd")
        if v["etcd"]["enabled"]:
            assert len(etcd) == 1, "no etcd StatefulSet"
            sts = etcd[0]
            assert sts["spec"]["replicas"] == v["etcd"]["replicas"]
            headless = one(objs, "Service", name=sts["spec"]["serviceName"])
            assert headless["spec"].get("clusterIP") == "None", "etcd Service is not headless"
            assert headless["spec"].get("publishNotReadyAddresses") is True
            args = " ".join(container(sts, "etcd")["args"])
            initial = re.search(r"--initial-cluster=(\S+)", args).group(1).split(",")
            assert len(initial) == v["etcd"]["replicas"], f"initial cluster {initial}"
            assert sts["spec"]["podManagementPolicy"] == "Parallel"
        else:
            assert not etcd and not find(objs, "Service", component="etcd"), "etcd rendered"
    return run


def a_sentinel(set_name):
    def run():
        objs = objs_of(set_name)
        v = values_of(set_name)
        d = one(objs, "Deployment", component="sentinel")
        assert d["spec"]["replicas"] == v["sentinel"]["replicas"]
        c = container(d, "sentinel")
        spec = env_map(c).get("STSENTINEL_INITIAL_CLUSTER_SPEC")
        if v["sentinel"]["initialClusterSpec"]:
            assert spec and spec["value"].endswith("/cluster-spec.json"), f"{spec}"
        else:
            assert spec is None, "--initial-cluster-spec set although disabled"
    return run


def a_proxy(set_name):
    def run():
        objs = objs_of(set_name)
        v = values_of(set_name)
        d = one(objs, "Deployment", component="proxy")
        assert d["spec"]["replicas"] == v["proxy"]["replicas"]
        c = container(d, "proxy")
        assert env_value(c, "STPROXY_LISTEN_ADDRESS") == "0.0.0.0"
        assert env_value(c, "STPROXY_PORT") == str(v["proxy"]["port"])
        rp = c["readinessProbe"]["httpGet"]
        assert rp["path"] == "/health" and rp["port"] == "metrics"
        rw = one(objs, "Service", name=f"{FULL_NAME(set_name)}-proxy")
        assert [p["targetPort"] for p in rw["spec"]["ports"]] == ["pg"]
        assert rw["spec"]["type"] == v["proxy"]["service"]["type"]
        ro = find(objs, "Service", name=f"{FULL_NAME(set_name)}-proxy-ro")
        if v["proxy"]["roPort"]["enabled"]:
            assert env_value(c, "STPROXY_RO_PORT") == str(v["proxy"]["roPort"]["port"])
            assert len(ro) == 1 and [p["targetPort"] for p in ro[0]["spec"]["ports"]] == ["pg-ro"]
        else:
            assert "STPROXY_RO_PORT" not in env_map(c), "--ro-port set although disabled"
            assert not ro, "read-only Service rendered although roPort is disabled"
        for flag in ("Idle", "Count", "Interval"):
            val = v["proxy"][f"tcpKeepalive{flag}"]
            name = f"STPROXY_TCP_KEEPALIVE_{flag.upper()}"
            if val != "":
                assert env_value(c, name) == str(val), name
            else:
                assert name not in env_map(c), name
    return run


def a_pdbs(set_name):
    def run():
        objs = objs_of(set_name)
        v = values_of(set_name)
        pdbs = {p["metadata"]["labels"]["app.kubernetes.io/component"]: p
                for p in find(objs, "PodDisruptionBudget")}
        for comp in ("keeper", "sentinel", "proxy"):
            if v[comp]["pdb"]["enabled"]:
                assert comp in pdbs, f"no PodDisruptionBudget for {comp}"
                w = [o for o in workloads(objs)
                     if o["metadata"]["labels"]["app.kubernetes.io/component"] == comp][0]
                assert pdbs[comp]["spec"]["selector"]["matchLabels"] == \
                    w["spec"]["selector"]["matchLabels"], f"{comp} PDB selects other pods"
            else:
                assert comp not in pdbs, f"PDB for {comp} although disabled"
        if v["etcd"]["enabled"] and v["etcd"]["pdb"]["enabled"]:
            assert pdbs["etcd"]["spec"]["minAvailable"] == v["etcd"]["replicas"] // 2 + 1
    return run


def a_service_account(set_name):
    def run():
        objs = objs_of(set_name)
        v = values_of(set_name)
        sas = find(objs, "ServiceAccount")
        name = sas[0]["metadata"]["name"] if sas else "default"
        assert bool(sas) == v["serviceAccount"]["create"]
        for w in workloads(objs):
            assert pod_spec(w)["serviceAccountName"] == name, w["metadata"]["name"]
    return run


def a_service_monitor(set_name):
    def run():
        objs = objs_of(set_name)
        v = values_of(set_name)
        sms = find(objs, "ServiceMonitor")
        if not v["metrics"]["serviceMonitor"]["enabled"]:
            assert not sms, "ServiceMonitor rendered although disabled"
            return
        sm = one(objs, "ServiceMonitor")
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        for k, val in v["metrics"]["serviceMonitor"]["labels"].items():
            assert sm["metadata"]["labels"].get(k) == val
        ports = {e["port"] for e in sm["spec"]["endpoints"]}
        assert ports == {"metrics"}
        # Every daemon's metrics port is behind a Service the ServiceMonitor selects.
        sel = sm["spec"]["selector"]
        comps = set(sel["matchExpressions"][0]["values"])
        selected = [s for s in find(objs, "Service")
                    if all(s["metadata"]["labels"].get(k) == x for k, x in sel["matchLabels"].items())
                    and s["metadata"]["labels"]["app.kubernetes.io/component"] in comps
                    and any(p["name"] == "metrics" for p in s["spec"]["ports"])]
        got = {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in selected}
        assert got == {"keeper", "sentinel", "proxy"}, f"metrics Services for {got}"
    return run


def a_notes(set_name):
    def run():
        manifests, _ = RENDERS[set_name]
        notes = [t for n, t in manifests.items() if n.endswith("NOTES.txt")]
        assert notes, "no NOTES.txt"
        text = notes[0]
        assert "psql" in text and f"{FULL_NAME(set_name)}-proxy" in text, "NOTES: no psql via the proxy"
        assert "stolonctl status" in text and "kubectl" in text, "NOTES: no status command"
        if VALUE_SETS[set_name].get("proxy", {}).get("roPort", {}).get("enabled") is False:
            assert "proxy-ro" not in text
        else:
            assert f"{FULL_NAME(set_name)}-proxy-ro" in text, "NOTES: no read-only Service"
    return run


def a_images(set_name):
    def run():
        objs = objs_of(set_name)
        v = values_of(set_name)
        for w in workloads(objs):
            if w["metadata"]["labels"]["app.kubernetes.io/component"] == "etcd":
                continue
            assert pod_spec(w).get("imagePullSecrets", []) == v["imagePullSecrets"]
            for c in pod_spec(w)["containers"]:
                assert c["image"].startswith(v["image"]["repository"] + ":"), c["image"]
                assert c["imagePullPolicy"] == v["image"]["pullPolicy"]
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
    return run


for set_name in VALUE_SETS:
    if set_name not in RENDERS:
        continue
    check(f"[{set_name}] standard labels on every object, selectors match pods",
          a_standard_labels(set_name))
    check(f"[{set_name}] Services, ports, probes and volume mounts are consistent",
          a_services_match(set_name))
    check(f"[{set_name}] keeper StatefulSet: /health readiness, liveness, PVC, uid, advertise "
          "address, password files", a_keeper(set_name))
    check(f"[{set_name}] init job runs stolonctl status, then init only without clusterdata",
          a_init_job(set_name))
    check(f"[{set_name}] cluster spec ConfigMap is the clusterSpec value", a_cluster_spec(set_name))
    check(f"[{set_name}] no password inlined in env, args or plain text", a_no_inlined_secrets(set_name))
    check(f"[{set_name}] no container sets an env var twice", a_unique_env(set_name))
    check(f"[{set_name}] Secret with both passwords (or existingSecret)", a_secret(set_name))
    check(f"[{set_name}] store endpoints, cluster name and etcd", a_store(set_name))
    check(f"[{set_name}] sentinel Deployment", a_sentinel(set_name))
    check(f"[{set_name}] proxy Deployment with rw/ro Services", a_proxy(set_name))
    check(f"[{set_name}] PodDisruptionBudgets", a_pdbs(set_name))
    check(f"[{set_name}] ServiceAccount", a_service_account(set_name))
    check(f"[{set_name}] ServiceMonitor", a_service_monitor(set_name))
    check(f"[{set_name}] NOTES.txt", a_notes(set_name))
    check(f"[{set_name}] image, pull policy and pull secrets", a_images(set_name))

check("[default] anti-affinity is preferred", a_anti_affinity("default", "soft"))
check("[external] anti-affinity is required", a_anti_affinity("external", "hard"))


def a_minimal_no_anti_affinity():
    d = one(objs_of("minimal"), "Deployment", component="proxy")
    assert "affinity" not in pod_spec(d), "affinity although proxy.podAntiAffinity is none"


check("[minimal] proxy anti-affinity off", a_minimal_no_anti_affinity)


def a_upgrade_hook():
    job = one(objs_of("upgrade-hook"), "Job", component="init")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert job["metadata"]["name"] == "pg-init"


check("[upgrade-hook] init job also on upgrades", a_upgrade_hook)

# ---------------------------------------------------------------- invalid values are refused

INVALID = {
    "etcd disabled without store.endpoints": ({"etcd": {"enabled": False}}, "store.endpoints"),
    "unknown podAntiAffinity": ({"keeper": {"podAntiAffinity": "sometimes"}}, "podAntiAffinity"),
    "store TLS without a Secret": ({"etcd": {"enabled": False},
                                    "store": {"endpoints": "https://e:2379",
                                              "tls": {"enabled": True}}}, "store.tls.secretName"),
}
for label, (values, needle) in INVALID.items():
    def refused(values=values, needle=needle):
        try:
            render(values)
        except helm.HelmError as e:
            assert needle in str(e), f"refused, but the message does not name {needle}: {e}"
            return
        raise AssertionError("rendered although the values are invalid")
    check(f"refused: {label}", refused)

print(f"\n{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
rc=${PIPESTATUS[0]}
set -e
# A crash outside the checks still ends with the summary line, as a failure.
if ! tail -n 1 "$WORK/output.txt" | grep -Eq '^[0-9]+ passed, [0-9]+ failed$'; then
  echo "FAIL the checks did not complete (exit status $rc)"
  echo "0 passed, 1 failed"
  exit 1
fi
exit "$rc"
