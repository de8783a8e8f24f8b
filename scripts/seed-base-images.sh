#!/usr/bin/env bash
# Pushes the base images envc's tests and benchmarks use to the local registry
# (scripts/registry.sh start):
#
#   127.0.0.1:$PORT/debian:bookworm   debootstrap --variant=minbase bookworm, from the Debian
#                                     mirror this machine's apt sources name
#   127.0.0.1:$PORT/busybox:latest    /bin/busybox from busybox-static and its applet links
#
# Each is one layer written deterministically (sorted GNU tar, mtimes clamped to
# SOURCE_DATE_EPOCH, 0 when unset, numeric owners, gzip -n) into an OCI layout and pushed with
# skopeo. Images the registry already has are skipped. The debootstrap download and the
# finished layouts are cached under /var/cache/envc-ci (ENVC_CACHE_DIR), so a rerun against an
# empty registry only pushes.
set -euo pipefail

port=${ENVC_REGISTRY_PORT:-5000}
registry=127.0.0.1:$port
cache=${ENVC_CACHE_DIR:-/var/cache/envc-ci}
epoch=${SOURCE_DATE_EPOCH:-0}
arch=$(dpkg --print-architecture)

mkdir -p "$cache"
work=$(mktemp -d "$cache/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The first Debian (not security) mirror in this machine's apt sources.
debian_mirror() {
    local mirror
    mirror=$(
        {
            grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{for (i = 2; i <= NF; i++) print $i}'
            grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
                sed -E 's/\[[^]]*\]//' | awk '{print $2}'
        } | grep -v security | head -n 1
    )
    echo "${mirror:-http://deb.debian.org/debian}"
}

has_image() {
    skopeo inspect --raw --tls-verify=false "docker://$registry/$1" >/dev/null 2>&1
}

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

# Writes folder $1 as a one-layer OCI image layout $2 tagged $3, with $4 as the config's Cmd
# (a JSON array).
write_layout() {
    local rootfs=$1 layout=$2 tag=$3 cmd=$4
    local tmp=$layout.tmp
    rm -rf "$tmp"
    mkdir -p "$tmp/blobs/sha256"

    (cd "$rootfs" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort) >"$work/top"
    LC_ALL=C tar -C "$rootfs" --format=gnu --sort=name --numeric-owner \
        --mtime="@$epoch" --clamp-mtime -cf "$work/layer.tar" -T "$work/top"
    local diff_id
    diff_id=$(sha256_of "$work/layer.tar")
    gzip -n -6 -c "$work/layer.tar" >"$work/layer.tar.gz"
    local layer layer_size
    layer=$(sha256_of "$work/layer.tar.gz")
    layer_size=$(stat -c %s "$work/layer.tar.gz")
    mv "$work/layer.tar.gz" "$tmp/blobs/sha256/$layer"
    rm -f "$work/layer.tar"

    printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$arch" "$cmd" "$diff_id" >"$work/config.json"
    local config config_size
    config=$(sha256_of "$work/config.json")
    config_size=$(stat -c %s "$work/config.json")
    mv "$work/config.json" "$tmp/blobs/sha256/$config"

    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
        "$config" "$config_size" "$layer" "$layer_size" >"$work/manifest.json"
    local manifest manifest_size
    manifest=$(sha256_of "$work/manifest.json")
    manifest_size=$(stat -c %s "$work/manifest.json")
    mv "$work/manifest.json" "$tmp/blobs/sha256/$manifest"

    printf '{"imageLayoutVersion":"1.0.0"}' >"$tmp/oci-layout"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
        "$manifest" "$manifest_size" "$tag" >"$tmp/index.json"

    rm -rf "$layout"
    mv "$tmp" "$layout"
    echo "seed: wrote $layout (manifest sha256:$manifest)"
}

push() {
    local layout=$1 tag=$2 name=$3
    skopeo copy --quiet --preserve-digests --dest-tls-verify=false \
        "oci:$layout:$tag" "docker://$registry/$name"
    echo "seed: pushed $registry/$name"
}

seed_debian() {
    local name=debian:bookworm layout=$cache/debian-bookworm-oci
    if has_image "$name"; then
        echo "seed: $registry/$name already there"
        return
    fi
    if [[ ! -f $layout/index.json ]]; then
        local mirror debs=$cache/debootstrap-bookworm-minbase-$arch.tgz rootfs=$work/debian
        mirror=$(debian_mirror)
        if [[ ! -f $debs ]]; then
            echo "seed: downloading bookworm minbase packages from $mirror"
            debootstrap --variant=minbase --arch="$arch" --make-tarball="$work/debs.tgz" \
                bookworm "$work/download" "$mirror" >"$work/debootstrap.log" 2>&1 ||
                { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
            mv "$work/debs.tgz" "$debs"
        fi
        echo "seed: installing bookworm minbase with debootstrap"
        debootstrap --variant=minbase --arch="$arch" --unpack-tarball="$debs" \
            bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
            { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
        if grep -qs " $rootfs/" /proc/self/mounts; then
            echo "seed: debootstrap left mounts under $rootfs" >&2
            exit 1
        fi
        # What a container runtime provides, and what changes on every run, stays out.
        rm -rf "$rootfs"/dev/* "$rootfs"/proc/* "$rootfs"/sys/* "$rootfs"/run/* "$rootfs"/tmp/*
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
        rm -f "$rootfs"/var/cache/apt/archives/*.deb
        rm -rf "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old
        find "$rootfs/var/log" -type f -delete
        rm -f "$rootfs/etc/hostname" "$rootfs/etc/resolv.conf" "$rootfs/etc/machine-id"
        write_layout "$rootfs" "$layout" bookworm '["bash"]'
        rm -rf "$rootfs"
    fi
    push "$layout" bookworm "$name"
}

seed_busybox() {
    local name=busybox:latest layout=$cache/busybox-oci rootfs=$work/busybox
    if has_image "$name"; then
        echo "seed: $registry/$name already there"
        return
    fi
    mkdir -p "$rootfs"/{bin,etc,root,tmp}
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [[ $applet == busybox || $applet == */* ]] || ln -s busybox "$rootfs/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
        >"$rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
    chmod 700 "$rootfs/root"
    chmod 1777 "$rootfs/tmp"
    write_layout "$rootfs" "$layout" latest '["sh"]'
    push "$layout" latest "$name"
}

if ! curl -fsS -o /dev/null --max-time 2 "http://$registry/v2/"; then
    echo "seed: no registry answers on $registry; run scripts/registry.sh start" >&2
    exit 1
fi
seed_busybox
seed_debian
