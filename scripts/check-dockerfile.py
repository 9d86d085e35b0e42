#!/usr/bin/env python3
"""Checks deploy/Dockerfile without a container engine (none runs here).

What can be checked outside a container is:
- the build stage's command, run here: it must build the binary `make test`
  built, without compiling anything (same command, same features, the
  lock file up to date: `--locked`);
- the runtime image can run that binary: every shared library it needs
  comes from a package the Debian slim image has (libc6, libgcc-s1,
  libstdc++6), and
  both stages are on the Debian release of this machine (same glibc);
- what the runtime stage copies exists; the configuration it installs
  passes `switchboard config check` with the image's environment, and its
  ports are the ones EXPOSE names; it runs as a user that is not root; the
  data dir is the volume.
Exits non-zero with a line per problem.
"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
BIN = ROOT / "target" / "release" / "switchboard"
# In every Debian image: apt itself needs them.
SLIM_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}

problems = []


def problem(msg):
    problems.append(msg)
    print(f"FAIL {msg}")


def ok(msg):
    print(f"ok   {msg}")


def instructions(text):
    """(instruction, arguments) of each Dockerfile line, continuations joined."""
    out, cur = [], ""
    for line in text.splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out


def stages(ins):
    """[(from image, alias, [instructions])]."""
    out = []
    for word, rest in ins:
        if word == "FROM":
            parts = rest.split()
            alias = parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None
            out.append((parts[0], alias, []))
        elif out:
            out[-1][2].append((word, rest))
    return out


def main():
    st = stages(instructions(DOCKERFILE.read_text()))
    if len(st) != 2:
        problem(f"expected a build stage and a runtime stage, found {len(st)}")
        return
    (build_image, alias, build), (run_image, _, run) = st
    codename = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    codename = codename.get("VERSION_CODENAME", "").strip('"')
    for image in (build_image, run_image):
        if image.endswith(f"-{codename}") or image.endswith(f":{codename}-slim") or image.endswith(f"{codename}-slim"):
            ok(f"{image} is Debian {codename}, like this machine")
        else:
            problem(f"{image} is not on Debian {codename} (this machine's release): the glibc may differ")

    runs = [rest for word, rest in build if word == "RUN"]
    cargo = [r for r in runs if r.startswith("cargo build")]
    if len(cargo) != 1:
        problem(f"the build stage should have one `cargo build` RUN, has {len(cargo)}")
        return
    cmd = shlex.split(cargo[0])
    if "--locked" not in cmd or "--release" not in cmd:
        problem(f"the build must be --release --locked: {cargo[0]}")
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    compiled = [l.strip() for l in out.stderr.splitlines() if l.strip().startswith("Compiling")]
    if out.returncode != 0:
        problem(f"`{cargo[0]}` failed here:\n{out.stderr[-2000:]}")
    elif compiled:
        problem(f"`{cargo[0]}` compiled {len(compiled)} crates after `make test`'s build (features differ?): {compiled[:5]}")
    else:
        ok(f"`{cargo[0]}` builds here the binary make test built, compiling nothing")

    libs = subprocess.run(["ldd", str(BIN)], capture_output=True, text=True).stdout
    for line in libs.splitlines():
        m = re.search(r"=>\s*(\S+)", line)
        path = m.group(1) if m else line.split()[0]
        if "vdso" in line or not path.startswith("/"):
            continue
        real = os.path.realpath(path)
        owner = ""
        for candidate in (path, real, real.replace("/usr/lib", "/lib", 1)):
            r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if r.returncode == 0:
                owner = r.stdout.split(":")[0]
                break
        if owner in SLIM_PACKAGES:
            ok(f"needs {os.path.basename(path)} ({owner}, in {run_image})")
        else:
            problem(f"the binary needs {path} from {owner or 'no package'}, not in {run_image}")

    env, user, volumes, exposed, copies = {}, None, [], [], []
    for word, rest in run:
        if word == "ENV":
            for kv in shlex.split(rest):
                k, _, v = kv.partition("=")
                env[k] = v
        elif word == "USER":
            user = rest.split(":")[0]
        elif word == "VOLUME":
            volumes += re.findall(r'"([^"]+)"', rest) or rest.split()
        elif word == "EXPOSE":
            exposed += rest.split()
        elif word == "COPY":
            parts = rest.split()
            copies.append((parts[0].startswith("--from="), parts[-2], parts[-1]))
    if user in (None, "root", "0"):
        problem(f"the runtime stage runs as root (USER {user})")
    else:
        ok(f"runs as {user}")
    for from_build, src, dst in copies:
        if from_build:
            if src != f"/src/{BIN.relative_to(ROOT)}":
                problem(f"copies {src} from the build stage, which builds /src/{BIN.relative_to(ROOT)}")
        elif not (ROOT / src).exists():
            problem(f"copies {src}, which does not exist")
    config = next((dst for fb, src, dst in copies if not fb and src.endswith(".toml")), None)
    if env.get("SWITCHBOARD_CONFIG") != config:
        problem(f"SWITCHBOARD_CONFIG={env.get('SWITCHBOARD_CONFIG')} is not the config file it copies ({config})")
    if env.get("SWITCHBOARD_DATA_DIR") not in volumes:
        problem(f"the data dir {env.get('SWITCHBOARD_DATA_DIR')} is not a volume ({volumes})")
    else:
        ok(f"the data dir {env['SWITCHBOARD_DATA_DIR']} is a volume")

    # The configuration the image starts with, as the binary reads it.
    src = next(src for fb, src, dst in copies if dst == config)
    image_env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    image_env.update(env)
    image_env["SWITCHBOARD_CONFIG"] = str(ROOT / src)
    out = subprocess.run([str(BIN), "config", "check"], capture_output=True, text=True, env=image_env)
    if out.returncode != 0:
        problem(f"the image's configuration fails `switchboard config check`: {out.stderr.strip()}")
        return
    ok("the image's configuration passes `switchboard config check`")
    values = dict(re.match(r"(\w+) = (\S+)", l).groups() for l in out.stdout.splitlines() if re.match(r"\w+ = ", l))
    http_port = values["http"].strip('"').rsplit(":", 1)[1]
    udp_port = int(values["udp_port"])
    if f"{http_port}/tcp" not in exposed:
        problem(f"EXPOSE lacks the HTTP port {http_port}/tcp: {exposed}")
    udp = [e for e in exposed if e.endswith("/udp")]
    lo_hi = [tuple(map(int, e[:-4].split("-"))) if "-" in e else (int(e[:-4]),) * 2 for e in udp]
    if not any(lo <= udp_port <= hi for lo, hi in lo_hi):
        problem(f"EXPOSE lacks the first media port {udp_port}/udp: {exposed}")
    else:
        ok(f"EXPOSE names HTTP {http_port}/tcp and media from {udp_port}/udp")


main()
if problems:
    print(f"{len(problems)} problem(s) in {DOCKERFILE.relative_to(ROOT)}")
    sys.exit(1)
print(f"{DOCKERFILE.relative_to(ROOT)}: all checks passed")
