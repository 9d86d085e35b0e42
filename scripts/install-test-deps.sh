#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine, and nothing else.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# The tests' virtualenv (.venv, for kubernetes-validate).
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v chromium >/dev/null || need+=(chromium)
# tests/browser/net/links.sh (namespaces, tbf, loss): ip and tc are in iproute2.
command -v nft >/dev/null || need+=(nftables)
command -v tc >/dev/null || need+=(iproute2)
# tests/browser/turn.test.mjs relays through Debian's coturn.
command -v turnserver >/dev/null || need+=(coturn)
# Recordings are checked with ffprobe and decoded with ffmpeg (Rust and browser tests).
command -v ffprobe >/dev/null || need+=(ffmpeg)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# deploy/prometheus.yml and the live /metrics are checked with promtool.
# Only that binary is taken from Debian's prometheus package (unpacked, not
# installed: installing would also set up a Prometheus daemon on :9090).
if ! command -v promtool >/dev/null; then
  echo "installing: promtool (from Debian's prometheus package)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1) || { $SUDO apt-get update -qq && (cd "$tmp" && apt-get download -qq prometheus); }
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  $SUDO install -m 0755 "$tmp/x/usr/bin/promtool" /usr/local/bin/promtool
  rm -rf "$tmp"
fi
# deploy/compose.yaml is validated by Debian's docker-compose (`config`
# needs no engine; without recommends, so no Docker engine is installed).
if ! command -v docker-compose >/dev/null; then
  echo "installing: docker-compose (without an engine)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker-compose >/dev/null \
    || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; }
fi
# deploy/kubernetes is checked by scripts/check-kubernetes.py with
# kubernetes-validate (PyPI), in a virtualenv of the tests' own.
if ! .venv/bin/python -c 'import kubernetes_validate, yaml' 2>/dev/null; then
  echo "installing: kubernetes-validate (into .venv)"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check kubernetes-validate==1.37.0 PyYAML
fi
# The lint step's tools (shipped with rustup's default profile, added if not).
for tool in fmt clippy; do
  cargo "$tool" --version >/dev/null 2>&1 || rustup component add "$([ $tool = fmt ] && echo rustfmt || echo clippy)"
done
command -v node >/dev/null || { echo "node (20+) is required for the browser tests" >&2; exit 1; }
echo "test dependencies present: $(chromium --version 2>/dev/null | head -1), node $(node --version)"
