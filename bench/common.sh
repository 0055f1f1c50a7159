# common.sh - sourced by the bench scripts: start a throw-away voxd on a free
# loopback port with its own data dir, create a funded user with an API key,
# and stop everything on exit. Needs curl and /usr/bin/python3.
# Variables set: VOXD_BIN, BENCH_DIR, VOXD_URL, VOXD_PID, VOXD_KEY.

BENCH_ROOT=$(cd "$(dirname "$0")/.." && pwd)
VOXD_BIN=${VOXD_BIN:-$BENCH_ROOT/build/voxd}
case "$VOXD_BIN" in /*) ;; *) VOXD_BIN="$BENCH_ROOT/$VOXD_BIN" ;; esac
BENCH_ADMIN_PASSWORD="Bench-Root-Pass-42-Wombat"
BENCH_DIR=$(mktemp -d /tmp/voxd-bench.XXXXXX)
VOXD_PID=

bench_cleanup() {
    voxd_stop
    rm -rf "$BENCH_DIR"
}
trap bench_cleanup EXIT INT TERM

json_field() { # json_field FIELD < json
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# voxd_start [serve flags...]: starts voxd and waits for /readyz (20 s).
voxd_start() {
    [ -x "$VOXD_BIN" ] || { echo "voxd binary not found: $VOXD_BIN (build it or set VOXD_BIN)" >&2; exit 1; }
    port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    VOXD_URL="http://127.0.0.1:$port"
    env VOXD_ADMIN_PASSWORD="$BENCH_ADMIN_PASSWORD" VOXD_FAST_PASSWORD_HASH=1 \
        "$VOXD_BIN" serve --listen "127.0.0.1:$port" --data "$BENCH_DIR/data" --no-access-log "$@" \
        >"$BENCH_DIR/voxd.log" 2>&1 &
    VOXD_PID=$!
    i=0
    until curl -sf -o /dev/null "$VOXD_URL/readyz"; do
        i=$((i + 1))
        if [ $i -gt 200 ] || ! kill -0 "$VOXD_PID" 2>/dev/null; then
            echo "voxd did not become ready; log:" >&2; tail -30 "$BENCH_DIR/voxd.log" >&2; exit 1
        fi
        sleep 0.1
    done
}

# voxd_stop: SIGTERM, up to 15 s, then SIGKILL (only our own pid).
voxd_stop() {
    [ -n "$VOXD_PID" ] || return 0
    if kill -0 "$VOXD_PID" 2>/dev/null; then
        kill -TERM "$VOXD_PID"
        i=0
        while kill -0 "$VOXD_PID" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
        kill -0 "$VOXD_PID" 2>/dev/null && kill -KILL "$VOXD_PID"
    fi
    wait "$VOXD_PID" 2>/dev/null
    VOXD_PID=
}

# voxd_user: signs up a user, logs in, creates an API key; sets VOXD_KEY.
voxd_user() {
    name="bench$(date +%s%N | tail -c 9)"
    pass="Bench-User-Pass-1234"
    curl -sf -H 'Content-Type: application/json' -d "{\"username\":\"$name\",\"password\":\"$pass\"}" \
        "$VOXD_URL/v1/users" >/dev/null || { echo "sign-up failed" >&2; exit 1; }
    jwt=$(curl -sf -H 'Content-Type: application/json' -d "{\"username\":\"$name\",\"password\":\"$pass\"}" \
        "$VOXD_URL/v1/auth/login" | json_field access_token) || { echo "login failed" >&2; exit 1; }
    VOXD_KEY=$(curl -sf -H "Authorization: Bearer $jwt" -H 'Content-Type: application/json' -d '{"name":"bench"}' \
        "$VOXD_URL/v1/api-keys" | json_field key) || { echo "key creation failed" >&2; exit 1; }
    export VOXD_KEY
}
