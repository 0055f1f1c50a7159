#!/bin/sh
# enhance.sh - speed of the `enhance` model: `voxd run enhance` on one core
# (taskset -c 0) over a long 16 kHz mono WAV (default 600 s of noisy,
# hummy speech-like audio made with ffmpeg), best of RUNS. Prints the
# real-time factor (RTF = seconds of processing per second of audio) from
# wall and CPU time, next to `convert` (decode + encode only) on the same
# file; asserts nothing. Env: VOXD_BIN (default build/voxd), SECONDS_AUDIO
# (600), RUNS (3), INPUT (use this WAV instead of the generated one).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${VOXD_BIN:-$root/build/voxd}
secs=${SECONDS_AUDIO:-600}
runs=${RUNS:-3}
[ -x "$bin" ] || { echo "bench enhance: voxd binary not found: $bin (build first)"; exit 1; }
dir=$(mktemp -d /tmp/voxd-bench-enhance.XXXXXX)
trap 'rm -rf "$dir"' EXIT INT TERM
if [ -n "${INPUT:-}" ]; then
    wav=$INPUT
else
    wav=$dir/in.wav
    # A voice-band tone pair with a 3 Hz "syllable" envelope, pink noise at
    # about 5 dB SNR and 50 Hz hum with harmonics: every stage has work.
    ffmpeg -v error -y \
        -f lavfi -i "aevalsrc='(0.5+0.5*sin(2*PI*3*t))*(0.08*sin(2*PI*(150+20*sin(2*PI*0.7*t))*t)+0.04*sin(2*PI*470*t)):s=16000:d=$secs'" \
        -f lavfi -i "anoisesrc=color=pink:amplitude=0.03:r=16000:d=$secs" \
        -f lavfi -i "aevalsrc='0.02*sin(2*PI*50*t)+0.01*sin(2*PI*150*t)+0.006*sin(2*PI*250*t):s=16000:d=$secs'" \
        -filter_complex "amix=inputs=3:normalize=0" -ac 1 -ar 16000 -c:a pcm_s16le "$wav"
fi
dur=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$wav")
pin=""
command -v taskset >/dev/null 2>&1 && pin="taskset -c 0"
echo "bench enhance: $(basename "$wav"), ${dur}s of 16 kHz mono, best of $runs, one core ($(nproc) online), $(date -u +%FT%TZ)"

# best_of MODEL ARGS...: prints "wall cpu" (seconds) of the fastest run.
best_of() {
    model=$1; shift
    best=""
    i=1
    while [ "$i" -le "$runs" ]; do
        /usr/bin/time -o "$dir/time" -f '%e %U %S' $pin "$bin" run "$model" "$wav" "$dir/out.wav" "$@" >/dev/null 2>&1
        t=$(tail -1 "$dir/time")
        wall=${t%% *}
        cpu=$(echo "$t" | awk '{print $2 + $3}')
        if [ -z "$best" ] || awk -v a="$wall" -v b="${best%% *}" 'BEGIN { exit !(a < b) }'; then best="$wall $cpu"; fi
        i=$((i + 1))
    done
    echo "$best"
}

report() {
    label=$1; wc=$2
    echo "$wc" | awk -v d="$dur" -v l="$label" '{ printf "%-34s wall %6.2f s  cpu %6.2f s  RTF(wall) %.5f  RTF(cpu) %.5f  (%.0fx real time)\n", l, $1, $2, $1 / d, $2 / d, d / $1 }'
}

report "convert (decode+encode only)" "$(best_of convert)"
report "enhance, defaults" "$(best_of enhance)"
report "enhance, dehum=off" "$(best_of enhance --param dehum=off)"
report "enhance, denoise=false" "$(best_of enhance --param denoise=false)"
report "enhance, max_limiting_db=20" "$(best_of enhance --param max_limiting_db=20)"
report "enhance, normalize+limiter off" "$(best_of enhance --param normalize=false --param limiter=false)"
