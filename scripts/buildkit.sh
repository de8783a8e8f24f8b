#!/usr/bin/env bash
# Runs the BuildKit that envc's BuildKit engine is tested against: the one inside Docker 26 from
# Debian trixie, with the containerd snapshotter (needed for OCI export, push and registry cache
# export), on its own socket, data root and exec root, with no bridge and no iptables rules.
# The packages are downloaded and unpacked, never installed: trixie packages would upgrade
# bookworm's libc. The daemon uses bookworm's runc, which scripts/setup.sh installs.
#
# Usage: scripts/buildkit.sh start|stop|status
#   start   unpacks the daemon if needed, starts it, and prints the address for
#           --buildkit-addr on stdout
#   stop    stops the daemon started here (by its pid file)
#   status  prints the address and exits 0 when the daemon answers, else exits 1
#
# ENVC_BUILDKIT_CACHE  folder with the download and the unpacked packages
#                      (default /var/cache/envc-ci/docker26)
# ENVC_STATE_DIR       folder for the daemon's state, socket, log and pid file
#                      (default /var/lib/envc-ci; the daemon uses its `buildkit` subfolder)
set -euo pipefail

action=${1:-}
cache=${ENVC_BUILDKIT_CACHE:-/var/cache/envc-ci/docker26}
state=${ENVC_STATE_DIR:-/var/lib/envc-ci}/buildkit
root=$cache/root
socket=$state/docker.sock
pid_file=$state/docker.pid
log_file=$state/dockerd.log
address=docker://$socket

log() {
    echo "buildkit: $*" >&2
}

running_pid() {
    [[ -f $pid_file ]] || return 1
    local pid
    pid=$(<"$pid_file")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# True when the daemon responds on its socket.
responds() {
    [[ -S $socket ]] &&
        curl -fsS -o /dev/null --max-time 2 --unix-socket "$socket" http://localhost/_ping 2>/dev/null
}

unpack() {
    if [[ -x $root/usr/sbin/dockerd && -x $root/usr/bin/containerd ]]; then
        return
    fi
    mkdir -p "$cache/lists/partial"
    echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main' \
        >"$cache/sources.list"
    local apt_options=(
        -o "Dir::Etc::sourcelist=$cache/sources.list"
        -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$cache/lists"
        # The cache folder belongs to root, so apt's unprivileged download user cannot write there.
        -o "APT::Sandbox::User=root"
    )
    log "fetching trixie's package list into $cache"
    apt-get "${apt_options[@]}" update -qq >&2
    rm -f "$cache"/*.deb
    log "downloading docker.io and containerd"
    (cd "$cache" && apt-get "${apt_options[@]}" download docker.io containerd >&2)
    rm -rf "$root"
    local deb
    for deb in "$cache"/*.deb; do
        dpkg-deb -x "$deb" "$root"
    done
    rm -f "$cache"/*.deb
    log "unpacked dockerd $("$root/usr/sbin/dockerd" --version | awk '{print $3}' | tr -d ,)"
}

start() {
    if pid=$(running_pid) && responds; then
        log "already running (pid $pid)"
        echo "$address"
        return
    fi
    [[ -x /usr/sbin/runc ]] || {
        log "/usr/sbin/runc is missing; run scripts/setup.sh"
        exit 1
    }
    unpack
    mkdir -p "$state/bin"
    # bookworm's runc: trixie's needs a newer glibc.
    ln -sf /usr/sbin/runc "$state/bin/runc"
    echo '{"features":{"containerd-snapshotter":true}}' >"$state/daemon.json"
    PATH=$state/bin:$root/usr/bin:$root/usr/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
        setsid "$root/usr/sbin/dockerd" \
        --config-file "$state/daemon.json" \
        -H "unix://$socket" \
        --data-root "$state/data" \
        --exec-root "$state/exec" \
        --pidfile "$pid_file" \
        --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
        >>"$log_file" 2>&1 </dev/null &
    for _ in $(seq 300); do
        if responds; then
            log "ready (pid $(<"$pid_file"), log in $log_file)"
            echo "$address"
            return
        fi
        sleep 0.1
    done
    log "the daemon did not respond within 30 s; see $log_file"
    exit 1
}

stop() {
    local pid
    pid=$(running_pid) || {
        log "not running"
        return
    }
    kill "$pid"
    for _ in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "stopped"
            return
        fi
        sleep 0.1
    done
    log "pid $pid did not stop within 30 s; stop it with: kill -9 $pid"
    exit 1
}

case $action in
start) start ;;
stop) stop ;;
status)
    if running_pid >/dev/null && responds; then
        echo "$address"
    else
        log "not running"
        exit 1
    fi
    ;;
*)
    echo "usage: scripts/buildkit.sh start|stop|status" >&2
    exit 2
    ;;
esac
