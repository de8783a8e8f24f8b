#!/usr/bin/env bash
# Installs what envc's tests, benchmarks and CI need on Debian bookworm: runc for the local
# engine, a registry, skopeo and umoci to check images, debootstrap and busybox-static for the
# base images, curl for the scripts, and just. Safe to run again: it installs only what is missing.
#
# Usage: sudo scripts/setup.sh
set -euo pipefail

packages=(runc docker-registry skopeo umoci debootstrap busybox-static curl ca-certificates)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$package")
done

if ((${#missing[@]} > 0)); then
    if ((EUID != 0)); then
        echo "setup: installing ${missing[*]} needs root; run: sudo $0" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    # Package scripts must not start services (docker-registry would take port 5000): a
    # policy-rc.d that refuses is put in place for the install, unless one is there already.
    policy=/usr/sbin/policy-rc.d
    own_policy=false
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=true
    fi
    trap '[[ $own_policy == true ]] && rm -f "$policy"' EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "setup: ${packages[*]} already installed"
fi

if ! command -v just >/dev/null; then
    echo "setup: installing just from PyPI (rust-just)"
    if command -v pip >/dev/null; then
        pip install --quiet rust-just
    else
        python3 -m pip install --quiet --break-system-packages rust-just
    fi
    command -v pyenv >/dev/null && pyenv rehash
    if ! command -v just >/dev/null; then
        echo "setup: just was installed but is not on PATH; add pip's script folder" \
            "($(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')) to PATH" >&2
        exit 1
    fi
else
    echo "setup: just already installed"
fi
