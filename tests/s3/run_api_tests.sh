#!/bin/sh
# run_api_tests.sh [VOXD_BIN] [pytest args...] - the black-box API suite with
# every voxd on the s3 blob backend: starts the S3 test server (s3server.sh)
# on loopback with its own port and data directory, passes
# --blob s3://...?endpoint=http://127.0.0.1:PORT through VOXD_EXTRA_FLAGS and
# the credentials through AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, runs
# scripts/run_api_tests.sh and stops the server by its PID. Exit code is the suite's.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=$(mktemp -d /tmp/voxd-s3api-XXXXXX) || exit 1
export S3_TEST_ACCESS_KEY=VOXDAPITEST S3_TEST_SECRET_KEY="api-test-secret/$$" S3_TEST_REGION=us-east-1 \
    S3_TEST_BUCKET=voxd-api S3_TEST_OWNER_PID=$$
cleanup() {
    "$here/s3server.sh" stop "$dir"
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM
port=$("$here/s3server.sh" start "$dir") || { echo "run_api_tests: the S3 test server did not start" >&2; exit 1; }
export AWS_ACCESS_KEY_ID="$S3_TEST_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_TEST_SECRET_KEY"
unset AWS_SESSION_TOKEN
export VOXD_EXTRA_FLAGS="--blob s3://$S3_TEST_BUCKET?endpoint=http://127.0.0.1:$port&region=us-east-1"
echo "run_api_tests: blob store s3 on 127.0.0.1:$port"
"$root/scripts/run_api_tests.sh" "$@"
