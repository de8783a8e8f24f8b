#!/usr/bin/env bash
# Starts or stops the two Docker daemons the benchmark compares envc with, each on its own
# socket, data root and exec root under the benchmark folder, with no bridge and no iptables
# rules, and each stopped by its own pid file:
#
#   d20   dockerd 20.10 from bookworm (classic builder), for the devcontainers CLI
#   d26   dockerd 26 from trixie with the containerd snapshotter, for buildx
#
# Usage: scripts/bench/daemons.sh start|stop [DIR]   (DIR as for scripts/bench/install.sh)
set -euo pipefail

action=${1:?usage: daemons.sh start|stop [DIR]}
dir=${2:-${ENVC_BENCH_DIR:-/var/lib/envc-bench}}

# Prints the folder the packages of daemon $1 are unpacked into.
packages() {
    case $1 in
    d20) echo "$dir/bookworm/root" ;;
    d26) echo "$dir/trixie/root" ;;
    esac
}

running_pid() {
    local pid_file=$dir/$1/docker.pid
    [[ -f $pid_file ]] || return 1
    local pid
    pid=$(<"$pid_file")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
    local name=$1 root state
    root=$(packages "$name")
    state=$dir/$name
    if running_pid "$name" >/dev/null; then
        echo "bench daemons: $name already running"
        return
    fi
    mkdir -p "$state/bin" "$state/config"
    # bookworm's runc and docker-init: trixie's need a newer glibc.
    ln -sf /usr/sbin/runc "$state/bin/runc"
    ln -sf "$dir/bookworm/root/usr/bin/docker-init" "$state/bin/docker-init"
    if [[ $name == d26 ]]; then
        echo '{"features":{"containerd-snapshotter":true}}' >"$state/daemon.json"
        mkdir -p "$state/config/cli-plugins"
        ln -sf "$root/usr/libexec/docker/cli-plugins/docker-buildx" "$state/config/cli-plugins/"
    else
        echo '{}' >"$state/daemon.json"
    fi
    PATH=$state/bin:$root/usr/bin:$root/usr/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
        setsid "$root/usr/sbin/dockerd" \
        --config-file "$state/daemon.json" \
        -H "unix://$state/docker.sock" \
        --data-root "$state/data" \
        --exec-root "$state/exec" \
        --pidfile "$state/docker.pid" \
        --bridge=none --iptables=false --ip-masq=false \
        >"$state/dockerd.log" 2>&1 </dev/null &
    local i
    for i in $(seq 1 100); do
        if DOCKER_CONFIG=$state/config "$root/usr/bin/docker" -H "unix://$state/docker.sock" \
            version >/dev/null 2>&1; then
            echo "bench daemons: $name ready (pid $(<"$state/docker.pid"))"
            return
        fi
        sleep 0.1
    done
    echo "bench daemons: $name failed to start within 10 s; see $state/dockerd.log" >&2
    exit 1
}

stop() {
    local name=$1 pid i
    pid=$(running_pid "$name") || {
        echo "bench daemons: $name not running"
        return
    }
    kill "$pid"
    for i in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || {
            echo "bench daemons: $name stopped"
            return
        }
        sleep 0.1
    done
    echo "bench daemons: $name (pid $pid) did not stop within 15 s; stop it with: kill $pid" >&2
    exit 1
}

case $action in
start) start d20 && start d26 ;;
stop) stop d20 && stop d26 ;;
*)
    echo "usage: daemons.sh start|stop [DIR]" >&2
    exit 2
    ;;
esac
