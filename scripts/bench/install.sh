#!/usr/bin/env bash
# Puts the tools the end-to-end benchmark compares envc with into one private folder, without
# installing any of them on the system:
#
#   $DIR/npm        the devcontainers CLI (the reference), from npm
#   $DIR/bookworm   docker.io (dockerd 20.10, its docker CLI), containerd and tini from bookworm,
#                   unpacked with dpkg-deb -x: the reference's classic builder
#   $DIR/trixie     docker.io (dockerd 26), docker-cli, containerd and docker-buildx from trixie,
#                   unpacked with dpkg-deb -x: BuildKit for the hand-written Dockerfile
#
# Trixie's runc needs a newer glibc, so both daemons use bookworm's /usr/sbin/runc
# (scripts/setup.sh installs it). Safe to run again: a part already in place is kept.
#
# Usage: scripts/bench/install.sh [DIR]   (default: $ENVC_BENCH_DIR, else /var/lib/envc-bench)
set -euo pipefail

dir=${1:-${ENVC_BENCH_DIR:-/var/lib/envc-bench}}
cli_version=0.89.0
mkdir -p "$dir"

# Downloads the named packages with apt's options in the array `apt` into $1 and unpacks them
# into $1/root.
download_and_unpack() {
    local into=$1
    shift
    rm -rf "$into/root" "$into"/*.deb
    mkdir -p "$into/root"
    # apt's download sandbox user cannot write to a root-owned private folder.
    (cd "$into" && apt-get "${apt[@]}" -o APT::Sandbox::User=root -qq download "$@")
    local deb
    for deb in "$into"/*.deb; do
        dpkg-deb -x "$deb" "$into/root"
    done
    rm -f "$into"/*.deb
}

if [[ ! -x $dir/npm/node_modules/.bin/devcontainer ]] ||
    [[ $("$dir/npm/node_modules/.bin/devcontainer" --version) != "$cli_version" ]]; then
    command -v npm >/dev/null || {
        echo "bench install: npm is missing; install it with: apt-get install npm" >&2
        exit 1
    }
    echo "bench install: @devcontainers/cli $cli_version from npm"
    npm install --prefix "$dir/npm" --no-audit --no-fund --silent "@devcontainers/cli@$cli_version"
fi

if [[ ! -x $dir/bookworm/root/usr/sbin/dockerd ]]; then
    echo "bench install: docker.io, containerd and tini from bookworm (unpacked)"
    apt=()
    download_and_unpack "$dir/bookworm" docker.io containerd tini
fi

if [[ ! -x $dir/trixie/root/usr/sbin/dockerd ]]; then
    echo "bench install: docker.io, docker-cli, containerd and docker-buildx from trixie (unpacked)"
    lists=$dir/trixie-apt
    mkdir -p "$lists/lists/partial"
    echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main' \
        >"$lists/sources.list"
    apt=(-o "Dir::Etc::sourcelist=$lists/sources.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$lists/lists" -o "Dir::Cache=$lists/cache")
    mkdir -p "$lists/cache/archives/partial"
    apt-get "${apt[@]}" -qq update
    download_and_unpack "$dir/trixie" docker.io docker-cli containerd docker-buildx
fi

for tool in /usr/sbin/runc; do
    [[ -x $tool ]] || {
        echo "bench install: $tool is missing; run scripts/setup.sh" >&2
        exit 1
    }
done
echo "bench install: ready in $dir"
