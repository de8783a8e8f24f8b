#!/usr/bin/env bash
# Times envc against the devcontainers CLI and a hand-written Dockerfile through buildx on the
# anchor project (testdata/anchor-project) and writes the table to BENCHMARKS.md.
#
# Installs what it needs into a private folder (scripts/bench/install.sh), starts the loopback
# registry (left running, as the tests expect) and both Docker daemons (stopped again on exit),
# builds envc in release mode and runs scripts/bench/compare.py.
#
# Usage: scripts/bench/run.sh
#
# BENCH_RUNS      rounds per cell (default 5)
# ENVC_BENCH_DIR  the private folder (default /var/lib/envc-bench)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=${ENVC_BENCH_DIR:-/var/lib/envc-bench}
runs=${BENCH_RUNS:-5}

((EUID == 0)) || {
    echo "bench: needs root (the local engine and dockerd run as root)" >&2
    exit 1
}

"$repo/scripts/bench/install.sh" "$dir"
"$repo/scripts/registry.sh" start
"$repo/scripts/seed-base-images.sh"

trap '"$repo/scripts/bench/daemons.sh" stop "$dir"' EXIT
"$repo/scripts/bench/daemons.sh" start "$dir"

(cd "$repo" && cargo build --release --quiet)
# The target folder may be shared with other checkouts: keep a copy of this build.
target=${CARGO_TARGET_DIR:-$repo/target}
cp "$target/release/envc" "$dir/envc"

python3 "$repo/scripts/bench/compare.py" \
    --repo "$repo" \
    --dir "$dir" \
    --envc "$dir/envc" \
    --anchor "$repo/testdata/anchor-project" \
    --dockerfile "$repo/testdata/anchor-project.Dockerfile" \
    --runs "$runs" \
    --out "$repo/BENCHMARKS.md"
