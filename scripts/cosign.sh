#!/usr/bin/env bash
# Downloads cosign from Debian trixie and unpacks it (never installs it: trixie packages would
# upgrade bookworm's libc), then prints the path of the cosign binary on stdout.
#
# Usage: scripts/cosign.sh
#
# ENVC_COSIGN_CACHE  folder that keeps the download and the unpacked files
#                    (default /var/cache/envc-ci/cosign). A second run reuses them.
set -euo pipefail

cache=${ENVC_COSIGN_CACHE:-/var/cache/envc-ci/cosign}
binary=$cache/root/usr/bin/cosign

log() {
    echo "cosign: $*" >&2
}

if [[ -x $binary ]] && "$binary" version >/dev/null 2>&1; then
    echo "$binary"
    exit 0
fi

mkdir -p "$cache/lists/partial"
echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main' \
    >"$cache/sources.list"
apt_options=(
    -o "Dir::Etc::sourcelist=$cache/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$cache/lists"
    # The cache folder belongs to root, so apt's unprivileged download user cannot write there.
    -o "APT::Sandbox::User=root"
)

log "fetching trixie's package list into $cache"
apt-get "${apt_options[@]}" update -qq >&2
rm -f "$cache"/cosign_*.deb
log "downloading the cosign package"
(cd "$cache" && apt-get "${apt_options[@]}" download cosign >&2)

rm -rf "$cache/root"
for deb in "$cache"/cosign_*.deb; do
    dpkg-deb -x "$deb" "$cache/root"
done
if ! "$binary" version >/dev/null 2>&1; then
    log "the unpacked $binary does not run; check the download in $cache"
    exit 1
fi
log "unpacked $(basename "$cache"/cosign_*.deb)"
echo "$binary"
