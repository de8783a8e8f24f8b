#!/usr/bin/env python3
"""Times envc against the devcontainers CLI and a hand-written Dockerfile on the anchor project.

Four tools build the same project in four scenarios, interleaved round by round (the tool order
rotates each round), and the minimum and median of each cell go to BENCHMARKS.md:

  reference   `devcontainer build` (CLI 0.89.0) on dockerd 20.10's classic builder, no push
              (the classic builder cannot push)
  dockerfile  the hand-written Dockerfile through buildx on dockerd 26's BuildKit (containerd
              snapshotter), pushed to the loopback registry
  envc        `envc build --push` with the local engine (release build), pushed to the loopback
              registry
  buildkit    `envc build --push --engine buildkit` on the same dockerd 26 as the Dockerfile,
              pushed to the loopback registry

Scenarios, each with the base image present and nothing else of the project cached for cold:
cold, nothing changed, last Feature's option changed, first Feature's script changed. Each
change uses a value no earlier run used, so no tool can find it in its cache.

Only 127.0.0.1 is contacted: the base image comes from the loopback registry and every push
goes there. scripts/bench/run.sh installs the tools, starts the daemons and calls this script.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TOOLS = ["reference", "dockerfile", "envc", "buildkit"]
SCENARIOS = ["cold", "noop", "option", "script"]
SCENARIO_NAMES = {
    "cold": "cold, base present",
    "noop": "nothing changed",
    "option": "last Feature's option changed",
    "script": "first Feature's script changed",
}
# The envc targets: a factor of the reference's median, or seconds.
TARGETS = {
    "cold": ("ratio", 0.25),
    "noop": ("seconds", 0.1),
    "option": ("ratio", 0.3),
    "script": ("ratio", 0.3),
}
REGISTRY = "127.0.0.1:5000"
BASE = f"{REGISTRY}/debian:bookworm"


class Bench:
    def __init__(self, args):
        self.repo = Path(args.repo).resolve()
        self.dir = Path(args.dir).resolve()
        self.envc = Path(args.envc).resolve()
        self.anchor = Path(args.anchor).resolve()
        self.dockerfile = Path(args.dockerfile).resolve()
        self.runs = args.runs
        self.work = self.dir / "work"
        self.log = open(self.dir / "compare.log", "a", encoding="utf-8")
        self.times = {(t, s): [] for t in TOOLS for s in SCENARIOS}
        self.envc_parts = {s: [] for s in SCENARIOS}
        self.envc_rss = {s: [] for s in SCENARIOS}
        self.token = f"{os.getpid()}"

    # Environments -----------------------------------------------------------------------

    def docker_env(self, daemon):
        root = self.dir / ("bookworm" if daemon == "d20" else "trixie") / "root"
        env = dict(os.environ)
        env["PATH"] = f"{root}/usr/bin:{root}/usr/sbin:{self.dir / daemon / 'bin'}:{env['PATH']}"
        env["DOCKER_HOST"] = f"unix://{self.dir / daemon / 'docker.sock'}"
        env["DOCKER_CONFIG"] = str(self.dir / daemon / "config")
        env["DOCKER_BUILDKIT"] = "0" if daemon == "d20" else "1"
        return env

    def envc_env(self, tool="envc"):
        env = dict(os.environ)
        env["ENVC_STORE"] = str(self.work / f"{tool}-store")
        return env

    # Running ----------------------------------------------------------------------------

    def run(self, argv, env, cwd=None, check=True):
        """Runs argv, returns (seconds, peak RSS in KiB, stdout)."""
        self.log.write(f"$ {' '.join(str(a) for a in argv)}\n")
        self.log.flush()
        started = time.monotonic()
        child = subprocess.Popen(
            [str(a) for a in argv],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
        )
        stdout = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        self.log.write(stdout.decode(errors="replace"))
        self.log.flush()
        if check and child.returncode != 0:
            sys.exit(
                f"bench: `{' '.join(str(a) for a in argv)}` failed with exit code "
                f"{child.returncode}\nhint: see {self.dir / 'compare.log'}"
            )
        return seconds, usage.ru_maxrss, stdout

    def docker(self, daemon, *args, check=True):
        return self.run(["docker", *args], self.docker_env(daemon), check=check)

    # Workspaces -------------------------------------------------------------------------

    def workspace(self, tool):
        return self.work / tool / "anchor-project"

    def restore(self, tool):
        ws = self.workspace(tool)
        if ws.exists():
            shutil.rmtree(ws)
        shutil.copytree(self.anchor, ws)
        for path in [ws, *ws.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        shutil.copy(self.dockerfile, self.work / tool / "Dockerfile")
        (self.work / tool / "Dockerfile").chmod(0o644)

    def change(self, tool, scenario, token):
        ws = self.workspace(tool)
        if scenario == "option":
            config = ws / ".devcontainer" / "devcontainer.json"
            text = config.read_text()
            assert '"version": "1.2.3"' in text
            config.write_text(text.replace('"version": "1.2.3"', f'"version": "1.2.3-{token}"'))
            dockerfile = self.work / tool / "Dockerfile"
            text = dockerfile.read_text()
            assert "VERSION=1.2.3 " in text
            dockerfile.write_text(text.replace("VERSION=1.2.3 ", f"VERSION=1.2.3-{token} "))
        elif scenario == "script":
            script = ws / ".devcontainer" / "features" / "base-user" / "install.sh"
            with open(script, "a", encoding="utf-8") as f:
                f.write(f"# benchmark change {token}\n")

    # Tools ------------------------------------------------------------------------------

    def setup(self):
        self.work.mkdir(parents=True, exist_ok=True)
        for tool in TOOLS:
            self.restore(tool)

        # The reference must use the classic builder: with buildx it needs Docker Hub.
        _, _, _ = self.docker("d20", "version")
        probe = subprocess.run(
            ["docker", "buildx", "version"],
            env=self.docker_env("d20"),
            capture_output=True,
        )
        if probe.returncode == 0:
            sys.exit(
                "bench: the reference's docker CLI finds a buildx plugin, so the devcontainers "
                "CLI would use BuildKit, which needs an image from Docker Hub\nhint: remove the "
                "system buildx plugin or run the benchmark on a machine without one"
            )
        self.docker("d20", "pull", "-q", BASE)
        self.docker("d26", "pull", "-q", BASE)

        # envc's seed store: the base image fetched and unpacked, nothing of the project.
        seed = self.work / "envc-seed"
        if seed.exists():
            shutil.rmtree(seed)
        env = dict(os.environ, ENVC_STORE=str(seed))
        self.run([self.envc, "build", self.workspace("envc"), "--progress", "quiet"], env)
        _, _, out = self.run([self.envc, "plan", self.workspace("envc"), "--json"], env)
        for step in json.loads(out)["features"]:
            snapshot = seed / "snapshots" / step["cacheKey"].replace(":", "-")
            if snapshot.exists():
                shutil.rmtree(snapshot)
        shutil.rmtree(seed / "cache")

    def reset(self, tool):
        """Forgets everything the tool cached of the project; keeps the base image."""
        if tool == "reference":
            _, _, out = self.docker("d20", "image", "ls", "-aq", "--no-trunc")
            _, _, base = self.docker("d20", "image", "inspect", "-f", "{{.Id}}", BASE)
            ids = [i for i in out.decode().split() if i and i != base.decode().strip()]
            if ids:
                self.docker("d20", "image", "rm", "-f", *ids, check=False)
            self.docker("d20", "image", "prune", "-f")
        elif tool == "dockerfile":
            self.docker("d26", "image", "rm", "-f", f"{REGISTRY}/bench/anchor-dockerfile:bench",
                        check=False)
            self.docker("d26", "builder", "prune", "-af")
        elif tool == "buildkit":
            # The base image stays in the daemon's image store. The build cache goes, and so
            # does envc's store, because this engine keeps only the finished image there.
            self.docker("d26", "builder", "prune", "-af")
            store = self.work / "buildkit-store"
            if store.exists():
                shutil.rmtree(store)
        else:
            store = self.work / "envc-store"
            if store.exists():
                shutil.rmtree(store)
            shutil.copytree(self.work / "envc-seed", store, symlinks=True)

    def build(self, tool):
        if tool == "reference":
            return self.run(
                [
                    self.dir / "npm" / "node_modules" / ".bin" / "devcontainer", "build",
                    "--workspace-folder", self.workspace(tool),
                    "--image-name", "anchor-reference:bench",
                ],
                self.docker_env("d20"),
            )
        if tool == "dockerfile":
            return self.run(
                [
                    "docker", "buildx", "build", "--quiet", "--network=none",
                    "-f", self.work / tool / "Dockerfile",
                    "--output",
                    f"type=image,name={REGISTRY}/bench/anchor-dockerfile:bench,push=true",
                    self.workspace(tool) / ".devcontainer",
                ],
                self.docker_env("d26"),
            )
        if tool == "buildkit":
            return self.run(
                [
                    self.envc, "build", self.workspace(tool), "--progress", "quiet", "--json",
                    "--engine", "buildkit",
                    "--buildkit-addr", f"docker://{self.dir / 'd26' / 'docker.sock'}",
                    "--tag", "anchor-buildkit:bench",
                    "--push", f"{REGISTRY}/bench/anchor-buildkit:bench",
                ],
                self.envc_env("buildkit"),
            )
        return self.run(
            [
                self.envc, "build", self.workspace(tool), "--progress", "quiet", "--json",
                "--tag", "anchor-envc:bench", "--push", f"{REGISTRY}/bench/anchor-envc:bench",
            ],
            self.envc_env(),
        )

    # The benchmark ----------------------------------------------------------------------

    def measure(self):
        for round_ in range(self.runs):
            order = TOOLS[round_ % len(TOOLS):] + TOOLS[:round_ % len(TOOLS)]
            for tool in order:
                for scenario in SCENARIOS:
                    token = f"r{self.token}-{round_}"
                    self.restore(tool)
                    if scenario == "cold":
                        self.reset(tool)
                    self.change(tool, scenario, token)
                    seconds, rss, out = self.build(tool)
                    self.times[(tool, scenario)].append(seconds)
                    if tool == "envc":
                        self.envc_parts[scenario].append(json.loads(out)["timings"])
                        self.envc_rss[scenario].append(rss)
                    print(f"bench: round {round_ + 1}/{self.runs} {tool:10} {scenario:6} "
                          f"{seconds:6.2f} s", flush=True)
            self.restore_all()

    def restore_all(self):
        for tool in TOOLS:
            self.restore(tool)

    # Report -----------------------------------------------------------------------------

    def versions(self):
        def out(argv, env=None):
            try:
                return subprocess.run([str(a) for a in argv], env=env, capture_output=True,
                                      text=True, check=True).stdout.strip()
            except (OSError, subprocess.CalledProcessError):
                return "unknown"

        d20, d26 = self.docker_env("d20"), self.docker_env("d26")
        commit = out(["git", "-C", self.repo, "rev-parse", "--short", "HEAD"])
        return {
            "envc": f"{out([self.envc, '--version'])} (commit {commit}, release build)",
            "devcontainers CLI":
                out([self.dir / "npm" / "node_modules" / ".bin" / "devcontainer", "--version"]),
            "node": out(["node", "--version"]),
            "dockerd (reference)": out(["docker", "version", "-f", "{{.Server.Version}}"], d20),
            "dockerd (Dockerfile, envc BuildKit)":
                out(["docker", "version", "-f", "{{.Server.Version}}"], d26),
            "buildx": out(["docker", "buildx", "version"], d26),
            "runc": out(["/usr/sbin/runc", "--version"]).splitlines()[0],
            "registry": out(["docker-registry", "--version"]),
        }

    def machine(self):
        cpu = "unknown"
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="utf-8") as f:
            mem_kib = int(f.readline().split()[1])
        try:
            debian = Path("/etc/debian_version").read_text().strip()
        except OSError:
            debian = "unknown"
        return (f"{os.cpu_count()} cores ({cpu}), {mem_kib / 2**20:.0f} GiB, Debian {debian}, "
                f"kernel {platform.release()}")

    def report(self, path):
        med = {k: statistics.median(v) for k, v in self.times.items()}
        low = {k: min(v) for k, v in self.times.items()}
        lines = [
            "# Benchmarks",
            "",
            "End-to-end builds of the anchor project (`testdata/anchor-project`: a Debian",
            "bookworm base and five local Features, one pulled in by `dependsOn`) by four tools",
            "on the same machine, interleaved round by round. Written by `just bench`",
            "(`scripts/bench/run.sh`); do not edit by hand.",
            "",
            f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"- Machine: {self.machine()}",
            f"- Runs: {self.runs} per cell; seconds of wall time, minimum / median",
            "",
            "| tool | " + " | ".join(SCENARIO_NAMES[s] for s in SCENARIOS) + " |",
            "| --- |" + " --- |" * len(SCENARIOS),
        ]
        names = {
            "reference": "reference: `devcontainer build`, classic builder, no push",
            "dockerfile": "hand-written Dockerfile, buildx, push",
            "envc": "envc, local engine, `--push`",
            "buildkit": "envc, BuildKit engine (dockerd 26), `--push`",
        }
        for tool in TOOLS:
            cells = [f"{low[(tool, s)]:.2f} / {med[(tool, s)]:.2f}" for s in SCENARIOS]
            lines.append(f"| {names[tool]} | " + " | ".join(cells) + " |")
        for tool, engine in [("envc", "envc"), ("buildkit", "envc BuildKit")]:
            for other, label in [("reference", "reference"), ("dockerfile", "Dockerfile")]:
                cells = [f"{med[(tool, s)] / med[(other, s)]:.2f} x" for s in SCENARIOS]
                lines.append(f"| {engine} / {label} (medians) | " + " | ".join(cells) + " |")
        cells = [f"{med[('dockerfile', s)] / med[('reference', s)]:.2f} x" for s in SCENARIOS]
        lines.append("| Dockerfile / reference (medians) | " + " | ".join(cells) + " |")

        lines += ["", "## envc against its targets", "",
                  "| scenario | envc median | target | met | faster than the Dockerfile |",
                  "| --- | --- | --- | --- | --- |"]
        for s in SCENARIOS:
            kind, value = TARGETS[s]
            envc = med[("envc", s)]
            if kind == "ratio":
                limit = value * med[("reference", s)]
                target = f"at most {value} x reference = {limit:.2f} s"
            else:
                limit = value
                target = f"at most {value} s"
            met = "yes" if envc <= limit else "no"
            faster = "yes" if envc < med[("dockerfile", s)] else "no"
            lines.append(f"| {SCENARIO_NAMES[s]} | {envc:.3f} s | {target} | {met} | {faster} |")

        lines += ["", "## Where envc's time goes (medians, seconds)", "",
                  "| scenario | plan | base | engine | push | total in process | peak RSS |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for s in SCENARIOS:
            parts = self.envc_parts[s]
            m = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
            rss = max(self.envc_rss[s]) / 1024
            lines.append(
                f"| {SCENARIO_NAMES[s]} | {m['planSeconds']:.3f} | {m['baseSeconds']:.3f} | "
                f"{m['buildSeconds']:.3f} | {m['pushSeconds']:.3f} | {m['totalSeconds']:.3f} | "
                f"{rss:.0f} MiB |")

        lines += ["", "## Versions", ""]
        lines += [f"- {k}: {v}" for k, v in self.versions().items()]
        lines += [
            "",
            "## What each scenario does",
            "",
            "- **cold, base present**: the base image is in each tool's store (pulled into both",
            "  daemons; fetched and unpacked into envc's store), nothing else of the project is",
            "  cached: the reference's images and the daemon's build cache are removed, envc's",
            "  store is a copy of one that holds only the base. The BuildKit engine starts from",
            "  an empty envc store and dockerd 26's build cache pruned; the base stays in that",
            "  daemon's image store, as for the Dockerfile.",
            "- **nothing changed**: the same build again.",
            "- **last Feature's option changed**: `app-tool`'s `version` option gets a value no",
            "  earlier run used (in the Dockerfile, the `VERSION=` of its `RUN`).",
            "- **first Feature's script changed**: a comment no earlier run used is appended to",
            "  `base-user/install.sh`.",
            "",
            "envc's layers are deterministic, so a rebuilt layer often has a digest the registry",
            "already holds and its upload is skipped; BuildKit's and the classic builder's layers",
            "carry build times and are uploaded again.",
            "",
            "## How to run",
            "",
            "```",
            "just bench            # this table (scripts/bench/run.sh), then the micro-benchmarks",
            "scripts/bench/run.sh  # only this table; BENCH_RUNS=7 for more rounds",
            "cargo bench           # only the criterion micro-benchmarks in benches/",
            "```",
            "",
            "`scripts/bench/run.sh` needs root, apt, npm and runc (scripts/setup.sh). It unpacks",
            "Docker 20.10 (bookworm) and Docker 26 with buildx (trixie) into",
            "`/var/lib/envc-bench` without installing them, installs the devcontainers CLI there",
            "from npm, starts the loopback registry and both daemons on their own sockets, and",
            "stops the daemons when done. Nothing but 127.0.0.1 is contacted during the runs.",
            "",
        ]
        Path(path).write_text("\n".join(lines))
        json.dump({f"{t}/{s}": v for (t, s), v in self.times.items()},
                  open(self.dir / "compare.json", "w"), indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--envc", required=True)
    parser.add_argument("--anchor", required=True)
    parser.add_argument("--dockerfile", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    bench = Bench(args)
    bench.setup()
    bench.measure()
    bench.report(args.out)
    print(f"bench: wrote {args.out}")


if __name__ == "__main__":
    main()
