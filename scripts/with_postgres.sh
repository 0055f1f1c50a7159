#!/bin/sh
# with_postgres.sh - runs a command against a throw-away PostgreSQL 15 cluster:
# initdb in a temp dir, a server on 127.0.0.1 with its own free port and
# socket dir, a database "voxd_test", then COMMAND with VOXD_TEST_STORE_URL
# and VOXD_DB set to its postgres:// URL (VOXD_TEST_PG_PID: the postmaster's
# PID, for fault tests; VOXD_TEST_PG_RESTART: a command that starts it again
# after a test stopped it, with the same data, port and user). The server is stopped by its PID and the directory
# removed afterwards, also when the command fails.
# initdb refuses to run as root: as root the cluster belongs to the Debian
# "postgres" user (runuser); otherwise to the calling user.
# Usage: scripts/with_postgres.sh COMMAND [ARG...]; exit status is COMMAND's.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$PGBIN/initdb" ] || { echo "with_postgres: no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 2; }

AS=""
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "with_postgres: no 'postgres' user to run the server as" >&2; exit 2; }
    AS="runuser -u postgres --"
fi
DIR=$(mktemp -d /tmp/voxd-pg-XXXXXX)
[ -n "$AS" ] && chown postgres "$DIR"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PID=""

# The postmaster's own PID (runuser does not pass every signal on).
postmaster_pid() {
    [ -f "$DIR/data/postmaster.pid" ] && head -1 "$DIR/data/postmaster.pid" || echo "$PID"
}

cleanup() {
    if [ -n "$PID" ]; then
        PM=$(postmaster_pid)
        kill -INT "$PM" 2>/dev/null || true         # fast shutdown
        i=0
        while kill -0 "$PM" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$PM" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

$AS "$PGBIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --no-sync >"$DIR/initdb.log" 2>&1 ||
    { cat "$DIR/initdb.log" >&2; exit 2; }
mkdir -p "$DIR/sock"
[ -n "$AS" ] && chown postgres "$DIR/sock"
$AS "$PGBIN/postgres" -D "$DIR/data" -h 127.0.0.1 -p "$PORT" -k "$DIR/sock" \
    -c fsync=off -c max_connections=300 >"$DIR/server.log" 2>&1 &
PID=$!
i=0
until "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$PID" 2>/dev/null; then
        echo "with_postgres: the server did not start" >&2
        cat "$DIR/server.log" >&2
        exit 2
    fi
    sleep 0.1
done
"$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres voxd_test

VOXD_TEST_STORE_URL="postgres://postgres@127.0.0.1:$PORT/voxd_test"
VOXD_DB=$VOXD_TEST_STORE_URL
VOXD_TEST_PG_PID=$(postmaster_pid)
VOXD_TEST_PG_RESTART="$AS $PGBIN/postgres -D $DIR/data -h 127.0.0.1 -p $PORT -k $DIR/sock -c fsync=off -c max_connections=300"
export VOXD_TEST_STORE_URL VOXD_DB VOXD_TEST_PG_PID VOXD_TEST_PG_RESTART
set +e
"$@"
rc=$?
set -e
exit $rc
