#!/bin/sh
# stream_wer.sh [CONDITIONS] - word error rate of `transcribe` on the eval
# kit's dev utterances (../shared/eval, default conditions "clean"), batch
# (`voxd run transcribe`) and streamed through GET /v1/stream
# (bench/stream_transcribe.py), side by side. Makes the corpus in
# $EVAL_DATA (default /tmp/voxd-eval/data) if it is missing.
set -eu
. "$(dirname "$0")/common.sh"
EVAL=${EVAL:-$BENCH_ROOT/../shared/eval}
EVAL_DATA=${EVAL_DATA:-/tmp/voxd-eval/data}
CONDITIONS=${1:-clean}
[ -f "$EVAL_DATA/corpus.json" ] || /usr/bin/python3 "$EVAL/make_corpus.py" --out "$EVAL_DATA"
voxd_start --signup-grant 100000
voxd_user
export VOXD_URL VOXD_KEY
echo "== batch: voxd run transcribe"
/usr/bin/python3 "$EVAL/eval_asr.py" --name voxd-batch --data "$EVAL_DATA" --conditions "$CONDITIONS" \
    --json "$BENCH_DIR/batch.json" --cmd "'$VOXD_BIN' run transcribe {in} --param format=text"
echo "== stream: GET /v1/stream"
/usr/bin/python3 "$EVAL/eval_asr.py" --name voxd-stream --data "$EVAL_DATA" --conditions "$CONDITIONS" \
    --json "$BENCH_DIR/stream.json" --cmd "/usr/bin/python3 '$BENCH_ROOT/bench/stream_transcribe.py' {in}"
