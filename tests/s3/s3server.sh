#!/bin/sh
# s3server.sh - starts and stops the S3 test server (server.js: s3rver behind a
# strict SigV4 verifier) on 127.0.0.1 for voxd's tests, with its own port and
# data directory; stops it by the PID it recorded. Installs the npm packages
# from package-lock.json (npm ci) the first time; nothing else is downloaded.
#   s3server.sh install          npm ci if node_modules is missing or stale
#   s3server.sh start DIR [PORT] start (PORT 0 or absent: any free port);
#                                prints the port; DIR gets pid, port, log, data/
#   s3server.sh stop DIR         stop the server started on DIR (by its PID)
# Credentials, region and bucket: S3_TEST_ACCESS_KEY, S3_TEST_SECRET_KEY,
# S3_TEST_REGION, S3_TEST_BUCKET (server.js has the defaults). With
# S3_TEST_OWNER_PID the server also exits once that process is gone, so a
# crashed test leaves nothing running.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

die() { echo "s3server: $*" >&2; exit 1; }

# The process exists and is not a zombie.
running() {
    [ -r "/proc/$1/status" ] || return 1
    ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"
}

# Running and really our server.js, so a recycled PID is never signalled.
alive() {
    running "$1" && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q "server[.]js"
}

install_deps() {
    command -v node >/dev/null 2>&1 || die "node is not installed (Debian: nodejs)"
    command -v npm >/dev/null 2>&1 || die "npm is not installed"
    # One installer at a time (tests may start several servers at once).
    exec 9<"$here/package-lock.json"
    flock 9
    # Stale means installed from another lock file (by content: a fresh
    # checkout's newer mtime says nothing).
    want=$(sha256sum < "$here/package-lock.json" | cut -d' ' -f1)
    have=$(cat "$here/node_modules/.voxd-lock-sha256" 2>/dev/null || true)
    if [ ! -d "$here/node_modules/s3rver" ] || [ "$want" != "$have" ]; then
        echo "s3server: installing the test server (npm ci)" >&2
        # A node_modules that links to another checkout's is left alone:
        # npm ci would empty the target. Install into our own instead.
        [ -L "$here/node_modules" ] && rm -f "$here/node_modules"
        (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2) ||
            die "npm ci failed in $here"
        echo "$want" > "$here/node_modules/.voxd-lock-sha256"
    fi
    flock -u 9
}

start() {
    dir=$1; port=${2:-0}
    [ -n "$dir" ] || die "start needs a directory"
    mkdir -p "$dir/data"
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/pid" ] && alive "$(cat "$dir/pid")"; then
        die "a server already runs on $dir (pid $(cat "$dir/pid"))"
    fi
    install_deps
    rm -f "$dir/port"
    node "$here/server.js" --dir "$dir/data" --port "$port" --port-file "$dir/port" \
        --owner "${S3_TEST_OWNER_PID:-0}" \
        </dev/null >>"$dir/log" 2>&1 &
    pid=$!
    echo "$pid" > "$dir/pid"
    i=0
    while [ ! -s "$dir/port" ]; do
        # (not alive(): until exec the child still shows this script's command line)
        if ! running "$pid"; then
            rm -f "$dir/pid"
            tail -20 "$dir/log" >&2
            die "the server exited during start-up"
        fi
        i=$((i + 1))
        [ "$i" -le 300 ] || { kill "$pid"; rm -f "$dir/pid"; die "the server did not start in 30 s"; }
        sleep 0.1
    done
    cat "$dir/port"
}

stop() {
    dir=$1
    [ -f "$dir/pid" ] || return 0
    pid=$(cat "$dir/pid")
    if alive "$pid"; then
        kill "$pid" 2>/dev/null || true
        i=0
        while alive "$pid" && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$dir/pid" "$dir/port"
}

case "${1:-}" in
    install) install_deps ;;
    start) start "${2:-}" "${3:-0}" ;;
    stop) stop "${2:?stop needs a directory}" ;;
    *) die "usage: s3server.sh install | start DIR [PORT] | stop DIR" ;;
esac
