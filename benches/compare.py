#!/usr/bin/env python3
"""Switchboard and Janus under the same load, in one run, on this machine.

Starts Janus (VideoRoom) in a network namespace with a veth pair
(benches/janus/start.sh), starts switchboard in the same namespace, runs the
load-test harness against each, runs the raw-limit baseline (criterion), and
prints one table. Needs root, `janus`, a release build
(`cargo build --release --workspace`).

    sudo benches/compare.py [--duration 10s] [--subscribers 100] [--pairs 100] [--pacing 0]

Scenarios: webinar (1 publisher at 1.5 Mb/s, --subscribers viewers),
conference (--conference peers, all publishing at 1.5 Mb/s) and pairs
(--pairs two-party rooms, 50 by default so one core of load keeps up, audio + --pairs-kbps video each way: the
agent/customer call).

SWITCHBOARD_BIN= runs another build of the server (an A/B of two commits).
--pacing is the load test's: 2.5 (its default) paces video like a browser,
0 sends every frame as one burst.
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

# Every load peer connects from one loopback address: lift the per-address
# and room caps a production server keeps (by environment, which older
# builds ignore).
for cap in ("CONNECTIONS", "CONNECTIONS_PER_IP", "PARTICIPANTS", "PARTICIPANTS_PER_ROOM"):
    os.environ.setdefault(f"SWITCHBOARD_MAX_{cap}", "1000000")
os.environ.setdefault("SWITCHBOARD_JOINS_PER_SECOND_PER_IP", "1000000")

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw).stdout


# The load on CPU 0 and the servers on CPU 1, so neither crowds out the other
# and runs repeat within a few percent. SERVER_CPU= (empty) lets the servers
# run anywhere; their CPU-seconds are their own either way.
LOAD_CPU = os.environ.get("LOAD_CPU", "0")
SERVER_CPU = os.environ.get("SERVER_CPU", "1") or None


def loadtest(ns, out, *args):
    cmd = ["ip", "netns", "exec", ns, "taskset", "-c", LOAD_CPU, str(BIN / "loadtest"), *args, "--json", str(out)]
    print("$", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, text=True, capture_output=True, timeout=600)
    print(r.stdout, r.stderr[-2000:], flush=True)
    return json.loads(out.read_text())


def raw_limit(fanout):
    """Copies per second of one core at the raw limit (criterion, this run)."""
    subprocess.run(["cargo", "bench", "-p", "switchboard-benches", "--bench", "forwarding", "--", f"raw_limit/{fanout}$"],
                   cwd=ROOT, check=True, capture_output=True, timeout=900)
    est = json.loads((ROOT / "target" / "criterion" / "raw_limit" / str(fanout) / "new" / "estimates.json").read_text())
    return fanout / (est["mean"]["point_estimate"] / 1e9)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--conference", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=50, help="two-party rooms in the pairs scenario")
    ap.add_argument("--pairs-kbps", default="500", help="video bitrate each way in the pairs scenario")
    ap.add_argument("--pacing", default="2.5", help="video pacing, multiple of the bitrate; 0 for bursts")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; the table shows each row's median run")
    a = ap.parse_args()
    ns = "sbjanus"
    subprocess.run([ROOT / "benches/janus/stop.sh"], env={**os.environ, "NS": ns})
    info = dict(kv.split("=", 1) for kv in sh(ROOT / "benches/janus/start.sh", env={**os.environ, "NS": ns}).split())
    if SERVER_CPU:  # Janus' threads (and those it starts later) go there too.
        for tid in os.listdir(f"/proc/{info['PID']}/task"):
            subprocess.run(["taskset", "-pc", SERVER_CPU, tid], capture_output=True)
    data = tempfile.mkdtemp(prefix="switchboard-bench-")
    out = pathlib.Path(data)
    pin = ["taskset", "-c", SERVER_CPU] if SERVER_CPU else []
    server = os.environ.get("SWITCHBOARD_BIN", str(BIN / "switchboard"))
    sb = subprocess.Popen(["ip", "netns", "exec", ns, *pin, server, "--http", "127.0.0.1:8080", "--udp-port", "0",
                           "--shards", os.environ.get("SHARDS", "1"), "--data-dir", data], stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if subprocess.run(["ip", "netns", "exec", ns, "curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]).returncode == 0:
                break
            time.sleep(0.2)
        peers = str(a.subscribers + 1)
        common = ["--duration", a.duration, "--pacing", a.pacing]
        janus = ["--target", "janus", "--url", info["URL"], "--bind-ip", info["IP"], "--server-pid", info["PID"]]
        sbargs = ["--keys", f"{data}/keys.json"]
        runs = {}
        # Rounds alternate the servers, so a slow patch of the machine hits both.
        for i in range(a.repeat):
            scenarios = (
                ("webinar", ["--peers", peers]),
                ("conference", ["--peers", str(a.conference)]),
                ("pairs", ["--peers", str(2 * a.pairs), "--video-kbps", a.pairs_kbps]),
            )
            for scenario, load in scenarios:
                for target, extra in (("switchboard", sbargs), ("janus", janus)):
                    r = loadtest(ns, out / f"{target}-{scenario}-{i}.json", scenario, *load, *extra, *common)
                    runs.setdefault((scenario, target), []).append(r)
        rows = []
        for (scenario, target), rs in runs.items():
            rs.sort(key=lambda r: r["server"]["forwarded_per_cpu_second"])
            rows.append((scenario, target, rs[len(rs) // 2]))
            print(f"{scenario} {target}: " + ", ".join(f"{r['server']['forwarded_per_cpu_second']:,.0f}" for r in rs), flush=True)
        raw = raw_limit(100)
    finally:
        sb.terminate()
        sb.wait(timeout=10)
        subprocess.run([ROOT / "benches/janus/stop.sh"], env={**os.environ, "NS": ns})
        shutil.rmtree(data, ignore_errors=True)

    print(f"\nraw limit (criterion raw_limit/100, this run): {raw:,.0f} copies per CPU-second; video pacing {a.pacing}\n")
    print("| scenario | server | forwarded packets per server CPU-second | ratio to raw limit | p50 / p99 end-to-end latency (µs) | p50 / p99 inside the server (µs) | server RSS (MB) | delivery |")
    print("|---|---|---|---|---|---|---|---|")
    by = {}
    for scenario, target, r in rows:
        s = r["server"]
        by[(scenario, target)] = s["forwarded_per_cpu_second"]
        d = s.get("forwarding_delay_us")
        inside = f"≤{d['p50']:.0f} / ≤{d['p99']:.0f}" if d else "n/a"
        print(f"| {scenario} | {target} | {s['forwarded_per_cpu_second']:,.0f} | {s['forwarded_per_cpu_second'] / raw:.2f} | "
              f"{r['latency_us']['p50']:.0f} / {r['latency_us']['p99']:.0f} | {inside} | {s['rss_bytes_max'] / 1e6:.1f} | {100 * r['delivery_ratio']:.2f}% |")
    for scenario in ("webinar", "conference", "pairs"):
        if (scenario, "janus") in by and by[(scenario, "janus")] > 0:
            print(f"switchboard / Janus, {scenario}: {by[(scenario, 'switchboard')] / by[(scenario, 'janus')]:.2f}x")


if __name__ == "__main__":
    main()
