#!/bin/sh
# upload.sh - upload throughput of a 200 MB WAV to POST /v1/jobs with curl
# (streamed from disk) against a fresh voxd with no workers. Prints MB/s per
# run and the server's peak RSS; asserts nothing.
# Env: VOXD_BIN (default build/voxd), SIZE_MB (200), RUNS (3).
set -eu
. "$(dirname "$0")/common.sh"
size_mb=${SIZE_MB:-200}
runs=${RUNS:-3}
voxd_start --workers 0 --max-upload "$((size_mb + 100))M" --max-duration 24h --signup-grant 1000000
voxd_user
wav="$BENCH_DIR/big.wav"
/usr/bin/python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import helpers; helpers.write_big_wav(sys.argv[2], int(sys.argv[3]) * 1048576)' \
    "$BENCH_ROOT/tests/api" "$wav" "$size_mb"
bytes=$(stat -c %s "$wav")
echo "bench upload: file $bytes bytes, $runs runs"
i=1
while [ "$i" -le "$runs" ]; do
    out=$(curl -s -o "$BENCH_DIR/resp.json" -w '%{http_code} %{time_total}' -H "X-API-Key: $VOXD_KEY" \
        -F model=convert -F "file=@$wav;type=audio/wav" "$VOXD_URL/v1/jobs")
    code=${out%% *}; secs=${out#* }
    if [ "$code" != 202 ]; then echo "run $i: HTTP $code: $(head -c 300 "$BENCH_DIR/resp.json")"; exit 1; fi
    awk -v b="$bytes" -v s="$secs" -v i="$i" 'BEGIN { printf "run %d: %.2f s, %.1f MB/s (to 202 Accepted)\n", i, s, b / 1048576 / s }'
    i=$((i + 1))
done
echo "voxd peak RSS: $(grep VmHWM /proc/"$VOXD_PID"/status | awk '{print $2, $3}')"
