#!/usr/bin/env python3
"""Checks deploy/kubernetes/ without a cluster (none runs here).

- Every manifest validates against Kubernetes' own schemas, strictly
  (kubernetes-validate: unknown fields fail).
- They fit together: the Service reaches the container's port, selectors
  match, every Secret key, ConfigMap and volume they name exists, the pod
  runs as the image's user, its media ports are the ones the configuration
  opens, its grace period outlasts the configured drain.
- They point at what the server really serves: the ConfigMap's
  configuration passes `switchboard config check`, the Secret's keys.json
  signs a token, and the real binary started with that configuration
  answers the liveness and readiness probes' paths with 200.
Run with the test virtualenv's python (scripts/install-test-deps.sh makes
it: .venv). Exits non-zero with a line per problem.
"""
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DIR = ROOT / "deploy" / "kubernetes"
BIN = ROOT / "target" / "release" / "switchboard"

problems = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        problems.append(msg)
    return cond


def duration_s(text):
    units = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)\s*([a-z]+)", text))


def main():
    files = sorted(DIR.glob("*.yaml"))
    out = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", *map(str, files)],
                         capture_output=True, text=True)
    check(out.returncode == 0, f"kubernetes-validate --strict on {len(files)} manifests"
          + ("" if out.returncode == 0 else f":\n{out.stdout}{out.stderr}"))

    docs = {}
    for f in files:
        for d in yaml.safe_load_all(f.read_text()):
            docs[(d["kind"], d["metadata"]["name"])] = d
    sts = docs[("StatefulSet", "switchboard")]
    svc = docs[("Service", "switchboard")]
    cm = docs[("ConfigMap", "switchboard")]
    secret = docs[("Secret", "switchboard")]
    pod = sts["spec"]["template"]
    spec = pod["spec"]
    (c,) = spec["containers"]

    labels = pod["metadata"]["labels"]
    check(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "the Service selects the pod")
    check(sts["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the StatefulSet selects its pods")
    ports = {p["name"]: p for p in c["ports"]}
    for p in svc["spec"]["ports"]:
        check(p["targetPort"] in ports, f"the Service's port {p['port']} targets the container's {p['targetPort']}")

    # The configuration, read by the binary itself.
    config_text = cm["data"]["switchboard.toml"]
    tmp = Path(tempfile.mkdtemp(prefix="switchboard-k8s-"))
    (tmp / "switchboard.toml").write_text(config_text)
    env = {"PATH": "/usr/bin:/bin", "SWITCHBOARD_TURN_SECRET": "x", "SWITCHBOARD_METRICS_TOKEN": "y"}
    out = subprocess.run([str(BIN), "config", "check", "--config", str(tmp / "switchboard.toml")],
                         capture_output=True, text=True, env=env)
    if not check(out.returncode == 0, "the ConfigMap's switchboard.toml passes `switchboard config check`"
                 + ("" if out.returncode == 0 else f": {out.stderr.strip()}")):
        return
    values = dict(re.match(r"(\w+) = (.+?)\s+#", l).groups() for l in out.stdout.splitlines() if re.match(r"\w+ = ", l))
    http_port = int(values["http"].strip('"').rsplit(":", 1)[1])
    check(ports["http"]["containerPort"] == http_port, f"the container's http port is the configured {http_port}")
    udp = sorted(p["containerPort"] for p in c["ports"] if p.get("protocol") == "UDP")
    first, shards = int(values["udp_port"]), int(values["shards"])
    check(udp == list(range(first, first + shards)), f"media ports {udp} are the {shards} shards' from {first}")
    drain = duration_s(values["drain_timeout"].strip('"'))
    grace = spec["terminationGracePeriodSeconds"]
    check(grace > drain, f"the grace period {grace} s outlasts the drain ({drain} s)")
    check("preStop" in c.get("lifecycle", {}), "a preStop hook")

    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        check(get["path"] == path and get["port"] in ("http", http_port), f"{probe} asks {path} on the http port")

    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            check(ref["name"] == "switchboard" and ref["key"] in secret_keys, f"{e['name']} comes from the Secret's {ref['key']}")
    volumes = {v["name"]: v for v in spec["volumes"]} | {t["metadata"]["name"]: t for t in sts["spec"]["volumeClaimTemplates"]}
    for m in c["volumeMounts"]:
        check(m["name"] in volumes, f"the mount of {m['mountPath']} has a volume")
        if "subPath" in m and "secret" in volumes.get(m["name"], {}):
            check(m["subPath"] in secret_keys, f"{m['subPath']} is in the Secret")
    data_mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "data")
    check(values["data_dir"].strip('"') == data_mount, f"the data dir is the volume at {data_mount}")
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    uid = re.search(r"--uid (\d+)", dockerfile).group(1)
    check(str(spec["securityContext"]["runAsUser"]) == uid, f"the pod runs as the image's user ({uid})")

    # The Secret's keys.json is what the server reads for its API keys.
    data = tmp / "data"
    data.mkdir()
    (data / "keys.json").write_text(secret["stringData"]["keys.json"])
    out = subprocess.run([str(BIN), "token", "--data-dir", str(data), "--room", "r", "--identity", "i"],
                         capture_output=True, text=True, env=env)
    check(out.returncode == 0 and out.stdout.count(".") == 2, "the Secret's keys.json signs a token"
          + ("" if out.returncode == 0 else f": {out.stderr.strip()}"))

    # The real server with that configuration (on loopback: flags win over
    # the file) answers the probes.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(BIN), "--config", str(tmp / "switchboard.toml"), "--http", f"127.0.0.1:{port}",
                               "--udp-bind", "127.0.0.1", "--udp-port", "0", "--data-dir", str(data)],
                              env={**env, "RUST_LOG": "warn"}, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 15
        for probe in ("livenessProbe", "readinessProbe"):
            path = c[probe]["httpGet"]["path"]
            status = None
            while status is None and time.time() < deadline:
                try:
                    status = urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2).status
                except urllib.error.HTTPError as e:
                    status = e.code
                except OSError:
                    time.sleep(0.1)
            check(status == 200, f"the server answers the {probe}'s {path} with {status}")
    finally:
        server.terminate()
        server.wait(timeout=10)


main()
if problems:
    print(f"{len(problems)} problem(s) in deploy/kubernetes")
    sys.exit(1)
print("deploy/kubernetes: all checks passed")
