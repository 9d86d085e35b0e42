#!/usr/bin/env python3
"""How cost per packet grows with load, and how many calls one core carries.

Steps the load test against one switchboard (one shard, pinned to CPU 1;
the load on CPU 0), on loopback, and prints one row per step: forwarded
packets per server CPU-second, CPU µs per packet, the server's busy share,
in-server p99 and delivery. Two curves:

- pairs: two-party calls (audio + --kbps video each way), --calls steps;
- conference: one room of each --sizes, everyone publishing.

A step's "busy" is server CPU-seconds per second of the steady window; the
capacity figure is the largest step with in-server p99 ≤ 1 ms and full
delivery, and the busy share says how far below saturation it was.

    python3 benches/capacity.py [--calls 10,25,50,75] [--sizes 4,8,16] [--kbps 300]

Needs a release build (cargo build --release --workspace).
"""

import argparse
import json
import os
import pathlib
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
PORT = 18095


def step(data, scenario, peers, kbps, duration):
    out = pathlib.Path(data) / f"{scenario}-{peers}.json"
    subprocess.run(["taskset", "-c", "0", str(BIN / "loadtest"), scenario, "--peers", str(peers),
                    "--video-kbps", str(kbps), "--duration", duration, "--url", f"http://127.0.0.1:{PORT}",
                    "--keys", f"{data}/keys.json", "--json", str(out)], capture_output=True, timeout=600)
    r = json.loads(out.read_text())
    s = r["server"]
    d = s.get("forwarding_delay_us") or {}
    # Busy share: the server's CPU per second over the steady window (the
    # load test ramps joins at 20 per second, then waits one second).
    start = peers / 20 + 1
    steady = [p["server_cpu_pct"] for p in r["series"]
              if p["server_cpu_pct"] is not None and start + 1 <= p["t"] <= start + float(duration.rstrip("s"))]
    steady.sort()
    return {
        "scenario": scenario, "peers": peers, "per_cpu_s": s["forwarded_per_cpu_second"],
        "us": s["cpu_us_per_forwarded_packet"], "busy": steady[len(steady) // 2] / 100 if steady else float("nan"),
        "p99": d.get("p99"), "delivery": r["delivery_ratio"], "rss": s["rss_bytes_max"] / 1e6,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", default="10,25,50,75")
    ap.add_argument("--sizes", default="4,8,16")
    ap.add_argument("--kbps", default="300")
    ap.add_argument("--duration", default="8s")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="switchboard-capacity-") as data:
        sb = subprocess.Popen(["taskset", "-c", "1", str(BIN / "switchboard"), "--http", f"127.0.0.1:{PORT}",
                               "--udp-port", "0", "--shards", "1", "--data-dir", data], stderr=subprocess.DEVNULL)
        try:
            time.sleep(1)
            for calls in map(int, a.calls.split(",")):
                rows.append(step(data, "pairs", 2 * calls, a.kbps, a.duration))
            for size in map(int, a.sizes.split(",")):
                rows.append(step(data, "conference", size, a.kbps, a.duration))
        finally:
            sb.terminate()
            sb.wait(timeout=10)
    print(f"| scenario | peers | packets per CPU-second | CPU µs per packet | server busy | in-server p99 (µs) | delivery | RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        p99 = f"≤{r['p99']:.0f}" if r["p99"] is not None else "n/a"
        print(f"| {r['scenario']} | {r['peers']} | {r['per_cpu_s']:,.0f} | {r['us']:.1f} | {100 * r['busy']:.0f}% | {p99} | "
              f"{100 * r['delivery']:.2f}% | {r['rss']:.1f} |")
    ok = [r for r in rows if r["scenario"] == "pairs" and r["p99"] is not None and r["p99"] <= 1000 and r["delivery"] >= 0.999]
    if ok:
        best = max(ok, key=lambda r: r["peers"])
        print(f"\ncapacity: {best['peers'] // 2} calls at {a.kbps} kb/s with in-server p99 ≤ 1 ms, "
              f"server {100 * best['busy']:.0f}% busy")


if __name__ == "__main__":
    main()
