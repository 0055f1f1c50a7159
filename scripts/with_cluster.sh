#!/bin/sh
# with_cluster.sh - runs a command next to the three shared services of voxd's
# cluster mode, all on 127.0.0.1 with free ports and private data dirs: a
# throw-away PostgreSQL (with_postgres.sh), the S3 test server
# (tests/s3/s3server.sh) and redis-server. Everything is stopped by PID and
# removed afterwards, also when the command fails. Exports, besides what
# with_postgres.sh sets (VOXD_TEST_STORE_URL, VOXD_TEST_PG_PID, ...):
#   VOXD_TEST_BLOB_URL   s3://BUCKET?endpoint=http://127.0.0.1:PORT&region=us-east-1
#   VOXD_TEST_S3_URL     http://127.0.0.1:PORT (also /__control/ for faults)
#   VOXD_TEST_S3_DATA    the S3 server's data directory (objects on disk)
#   VOXD_TEST_BUS_URL    redis://127.0.0.1:PORT
#   VOXD_TEST_REDIS_PIDFILE  redis-server's pid file (a test may restart it)
#   VOXD_TEST_REDIS_CMD  the command that (re)starts redis-server in the foreground
#   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY  the S3 test credentials
# Usage: scripts/with_cluster.sh COMMAND [ARG...]; exit status is COMMAND's.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${VOXD_TEST_PG_PID:-}" ]; then
    exec "$root/scripts/with_postgres.sh" "$0" "$@"
fi
command -v redis-server >/dev/null 2>&1 || { echo "with_cluster: redis-server is not installed" >&2; exit 2; }

DIR=$(mktemp -d /tmp/voxd-cluster-XXXXXX)
mkdir -p "$DIR/s3" "$DIR/redis"
export S3_TEST_ACCESS_KEY=VOXDCLUSTERTEST S3_TEST_SECRET_KEY="cluster-test-secret/$$" S3_TEST_REGION=us-east-1 \
    S3_TEST_BUCKET=voxd-cluster S3_TEST_OWNER_PID=$$

# The process in a pid file, if it is still ours to stop.
pid_of() { [ -s "$1" ] && head -1 "$1" || true; }

cleanup() {
    "$root/tests/s3/s3server.sh" stop "$DIR/s3" || true
    RP=$(pid_of "$DIR/redis/redis.pid")
    if [ -n "$RP" ] && tr '\0' ' ' < "/proc/$RP/cmdline" 2>/dev/null | grep -q redis-server; then
        kill "$RP" 2>/dev/null || true
        i=0
        while kill -0 "$RP" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$RP" 2>/dev/null || true
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

S3PORT=$("$root/tests/s3/s3server.sh" start "$DIR/s3") || { echo "with_cluster: the S3 test server did not start" >&2; exit 2; }

RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
VOXD_TEST_REDIS_CMD="redis-server --bind 127.0.0.1 --port $RPORT --save '' --appendonly no --daemonize no \
--dir $DIR/redis --pidfile $DIR/redis/redis.pid --logfile $DIR/redis/redis.log"
sh -c "exec $VOXD_TEST_REDIS_CMD" </dev/null >/dev/null 2>&1 &
i=0
until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -le 100 ] || { echo "with_cluster: redis-server did not start" >&2; cat "$DIR/redis/redis.log" >&2; exit 2; }
    sleep 0.1
done

VOXD_TEST_BLOB_URL="s3://$S3_TEST_BUCKET?endpoint=http://127.0.0.1:$S3PORT&region=us-east-1"
VOXD_TEST_S3_URL="http://127.0.0.1:$S3PORT"
VOXD_TEST_S3_DATA="$DIR/s3/data"
VOXD_TEST_BUS_URL="redis://127.0.0.1:$RPORT"
VOXD_TEST_REDIS_PIDFILE="$DIR/redis/redis.pid"
AWS_ACCESS_KEY_ID=$S3_TEST_ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$S3_TEST_SECRET_KEY
export VOXD_TEST_BLOB_URL VOXD_TEST_S3_URL VOXD_TEST_S3_DATA VOXD_TEST_BUS_URL VOXD_TEST_REDIS_PIDFILE \
    VOXD_TEST_REDIS_CMD AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
unset AWS_SESSION_TOKEN
echo "with_cluster: postgres ${VOXD_TEST_STORE_URL#*@}, s3 127.0.0.1:$S3PORT, redis 127.0.0.1:$RPORT"
set +e
"$@"
rc=$?
set -e
exit $rc
