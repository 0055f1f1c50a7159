#!/bin/sh
# run.sh [VOXD_BIN] [pytest args...] - the api-cluster step of `make test`:
# starts PostgreSQL, the S3 test server and redis-server on loopback
# (scripts/with_cluster.sh), then runs the black-box API suite (tests/api)
# and the cluster-only tests (tests/cluster) in cluster mode: every test
# server is 2 API nodes + 2 worker processes on those shared services, with
# its own PostgreSQL schema and S3 key prefix. Exit code is pytest's.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="${1:-build/voxd}"
[ $# -gt 0 ] && shift
# A private pytest base dir: other pytest runs on this machine prune the shared one.
bt=$(mktemp -d /tmp/voxd-cluster-pytest-XXXXXX) || exit 1
trap 'rm -rf "$bt"' EXIT
"$root/scripts/with_cluster.sh" sh -c '
    VOXD_CLUSTER=1
    VOXD_EXTRA_FLAGS="--db $VOXD_TEST_STORE_URL?schema={data}&pool=4 --blob $VOXD_TEST_BLOB_URL&prefix={data}/ --bus $VOXD_TEST_BUS_URL"
    export VOXD_CLUSTER VOXD_EXTRA_FLAGS
    exec "$0" "$@" tests/cluster' "$root/scripts/run_api_tests.sh" "$bin" --basetemp="$bt/t" "$@"
