#!/bin/sh
# Stops everything in the Janus namespace and removes it.
NS=${NS:-sbjanus}
for pid in $(ip netns pids "$NS" 2>/dev/null); do kill "$pid" 2>/dev/null; done
sleep 0.5
for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
ip netns del "$NS" 2>/dev/null || true
