#!/bin/sh
# balance.sh - authenticated GET /v1/balance throughput and latency with wrk
# against a fresh voxd (no workers). Prints figures; asserts nothing.
# Env: VOXD_BIN (default build/voxd), THREADS (2), CONNECTIONS (32), DURATION (10s).
set -eu
. "$(dirname "$0")/common.sh"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
voxd_start --workers 0
voxd_user
curl -sf -H "X-API-Key: $VOXD_KEY" "$VOXD_URL/v1/balance" >/dev/null
wrk -t"${THREADS:-2}" -c"${CONNECTIONS:-32}" -d"${DURATION:-10s}" --latency \
    -s "$BENCH_ROOT/bench/balance.lua" "$VOXD_URL/v1/balance"
