#!/usr/bin/env bash
# Starts or stops a local OCI registry (Debian's docker-registry) on 127.0.0.1 for envc's tests.
#
# Usage: scripts/registry.sh start|stop|status
#
# ENVC_REGISTRY_PORT  port to listen on (default 5000)
# ENVC_STATE_DIR      folder for the registry's blobs, config, log and pid file
#                     (default /var/lib/envc-ci). Blobs survive a stop, so images seeded once
#                     are still there on the next start
set -euo pipefail

port=${ENVC_REGISTRY_PORT:-5000}
state=${ENVC_STATE_DIR:-/var/lib/envc-ci}/registry-$port
pid_file=$state/registry.pid
log_file=$state/registry.log
url=http://127.0.0.1:$port/v2/

responds() {
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null
}

running_pid() {
    [[ -f $pid_file ]] || return 1
    local pid
    pid=$(<"$pid_file")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
    if pid=$(running_pid) && responds; then
        echo "registry: already running on 127.0.0.1:$port (pid $pid)"
        return
    fi
    if responds; then
        echo "registry: something else already responds on $url; stop it or set" \
            "ENVC_REGISTRY_PORT to a free port" >&2
        exit 1
    fi
    command -v docker-registry >/dev/null || {
        echo "registry: docker-registry is not installed; run scripts/setup.sh" >&2
        exit 1
    }
    mkdir -p "$state/data"
    cat >"$state/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $state/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
CONFIG
    setsid docker-registry serve "$state/config.yml" </dev/null >>"$log_file" 2>&1 &
    echo $! >"$pid_file"
    for _ in $(seq 100); do
        if responds; then
            echo "registry: listening on 127.0.0.1:$port (pid $(<"$pid_file"), data in $state/data)"
            return
        fi
        if ! running_pid >/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "registry: did not respond on $url; its log ($log_file) ends with:" >&2
    tail -n 20 "$log_file" >&2 || true
    stop >/dev/null
    exit 1
}

stop() {
    if ! pid=$(running_pid); then
        rm -f "$pid_file"
        echo "registry: not running"
        return
    fi
    kill "$pid"
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    rm -f "$pid_file"
    echo "registry: stopped (pid $pid)"
}

case ${1:-} in
start) start ;;
stop) stop ;;
status)
    if pid=$(running_pid) && responds; then
        echo "registry: running on 127.0.0.1:$port (pid $pid)"
    else
        echo "registry: not running"
        exit 1
    fi
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
