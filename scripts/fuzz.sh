#!/bin/sh
# fuzz.sh [SECONDS] [TARGET...] - builds the libFuzzer targets of tests/fuzz/
# with clang -fsanitize=fuzzer,address,undefined and the Makefile's own flags,
# runs each SECONDS (default 10) and prints "fuzz_x: ok (N runs)" or the crash,
# then "fuzz: N passed, N failed"; exit 1 on any crash. FUZZ_BUILD (default
# /tmp/voxd-fuzz-$UID) keeps the objects and crash artifacts.
set -u
cd "$(dirname "$0")/.." || exit 1
secs=${1:-10}
[ $# -gt 0 ] && shift
case "$secs" in *[!0-9]*|'') echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;; esac
cc=${FUZZ_CC:-clang}
build=${FUZZ_BUILD:-/tmp/voxd-fuzz-$(id -u)}
artifacts="$build/artifacts"
work=$(mktemp -d /tmp/voxd-fuzz-run.XXXXXX) || exit 1
# Scratch files of the targets (uploads, probed inputs, the multipart
# target's database): RAM-backed when possible, removed even after a crash.
scratch=$(mktemp -d /dev/shm/voxd-fuzz.XXXXXX 2>/dev/null || mktemp -d /tmp/voxd-fuzz-scratch.XXXXXX) || exit 1
trap 'rm -rf "$work" "$scratch"' EXIT INT TERM
export VOXD_FUZZ_TMP="$scratch"
mkdir -p "$build/fuzz" "$artifacts"

opt="-O1 -g -fno-omit-frame-pointer"
lib_san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
bin_san="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"

# The Makefile's CFLAGS and libraries, so the targets see exactly what voxd sees.
make_var() {
    # shellcheck disable=SC2016 # $(VAR) is for make, not the shell
    printf 'fuzz-print-var:\n\t@echo $(%s)\n' "$1" |
        make --no-print-directory -s -f Makefile -f - CC="$cc" BUILD="$build" OPT="$opt" SAN="$2" fuzz-print-var
}

echo "== building libvoxd for fuzzing in $build"
if ! make --no-print-directory CC="$cc" BUILD="$build" OPT="$opt" SAN="$lib_san" "$build/libvoxd.a" \
        > "$work/build.log" 2>&1; then
    grep -v '^  CC ' "$work/build.log" | tail -30
    echo "fuzz: 0 passed, 1 failed"
    exit 1
fi
cflags=$(make_var CFLAGS "$bin_san")
libs=$(make_var PKG_LIBS "$bin_san")

targets=""
for src in tests/fuzz/fuzz_*.c; do
    t=$(basename "$src" .c)
    if [ $# -gt 0 ]; then
        want=0
        for a in "$@"; do [ "$a" = "$t" ] || [ "fuzz_$a" = "$t" ] && want=1; done
        [ "$want" -eq 1 ] || continue
    fi
    targets="$targets $t"
done
[ -n "$targets" ] || { echo "fuzz: no target matches $*" >&2; exit 2; }

# Seeds that are generated rather than committed: small audio files of every
# accepted container (fuzz_audio_probe) made by ffmpeg from a short tone.
gen_audio_seeds() {
    dir="$work/seeds/fuzz_audio_probe"
    mkdir -p "$dir"
    if ! command -v ffmpeg > /dev/null 2>&1; then
        echo "  (ffmpeg not found: fuzz_audio_probe starts from the committed seeds only)"
        return
    fi
    for spec in "wav:-c:a pcm_s16le" "flac:-c:a flac" "mp3:-c:a libmp3lame -b:a 32k" \
                "ogg:-c:a libvorbis" "opus:-c:a libopus -b:a 16k" "m4a:-c:a aac -b:a 32k" \
                "webm:-c:a libopus -b:a 16k"; do
        ext=${spec%%:*}; codec=${spec#*:}
        rate=8000
        case "$ext" in opus|webm) rate=48000 ;; esac
        # shellcheck disable=SC2086
        ffmpeg -v error -y -f lavfi -i "sine=frequency=440:duration=0.3:sample_rate=$rate" -ac 1 \
            $codec "$dir/tone.$ext" < /dev/null || echo "  (ffmpeg could not make a .$ext seed)"
    done
}

# Dictionaries: the tokens each format is made of, so mutations speak it.
write_dict() {
    case "$1" in
    fuzz_jwt) printf '%s\n' '"{\"alg\":\"HS256\",\"typ\":\"JWT\"}"' '"\"alg\""' '"\"HS256\""' '"\"typ\""' \
        '"\"JWT\""' '"\"crit\""' '"\"exp\""' '"\"sub\""' '"\"iat\""' '"1800000000"' '"eyJ"' '"."' ;;
    fuzz_credits|fuzz_catalog) printf '%s\n' '"1e9"' '"0.000001"' '"1000000000"' '"-"' '"."' '"e-7"' \
        '"\"format\""' '"\"sample_rate\""' '"\"channels\""' '"\"wav\""' '"\"flac\""' '"\"opus\""' \
        '"\"mp3\""' '"true"' '"null"' '"16000"' '"48000"' ;;
    fuzz_config) printf '%s\n' '"--listen="' '"--data="' '"--db="' '"--blob="' '"--web="' '"--node-id="' \
        '"--http-threads="' '"--workers="' '"--request-timeout="' '"--max-body="' '"--max-connections="' \
        '"--max-upload="' '"--max-duration="' '"--signup-grant="' '"--allow-self-top-up"' '"--no-signup"' \
        '"--jwt-ttl="' '"--lease="' '"--heartbeat="' '"--max-attempts="' '"--retry-base="' \
        '"--shutdown-grace="' '"--log-level="' '"--no-access-log"' '"VOXD_LEASE="' '"VOXD_NO_SIGNUP="' \
        '"VOXD_MAX_UPLOAD="' '"VOXD_DATA="' '"VOXD_SIGNUP_GRANT="' '"1.5m"' '"3h"' '"256M"' '"2G"' '"KiB"' ;;
    fuzz_router) printf '%s\n' '"GET "' '"POST "' '"HEAD "' '"DELETE "' '"PUT "' '"/v1/jobs/"' '"/result"' \
        '"/v1/admin/users/"' '"/credits"' '"{id}"' '"%2F"' '"%00"' '"%"' '"/v1/models/"' ;;
    fuzz_range) printf '%s\n' '"bytes="' '"-"' '","' '"9223372036854775807"' ;;
    fuzz_multipart) printf '%s\n' '"\x0d\x0a"' '"--"' '"Content-Disposition: form-data; name=\"file\""' \
        '"; filename=\"a.wav\""' '"Content-Type: audio/wav"' '"Content-Type: multipart/mixed; boundary="' \
        '"Content-Transfer-Encoding: "' '"name=\"model\""' '"name=\"params\""' '"boundary"' ;;
    *) return 1 ;;
    esac > "$work/$1.dict"
}

gen_audio_seeds
pass=0; fail=0
for t in $targets; do
    bin="$build/fuzz/$t"
    # shellcheck disable=SC2086
    if ! $cc $cflags -Isrc -o "$bin" "tests/fuzz/$t.c" "$build/libvoxd.a" $bin_san $libs -lcurl \
            > "$work/$t.build.log" 2>&1; then
        echo "$t: BUILD FAILED"; tail -20 "$work/$t.build.log"
        fail=$((fail + 1)); continue
    fi
    corpus="$work/corpus/$t"
    mkdir -p "$corpus"
    seeds=""
    [ -d "tests/fuzz/corpus/$t" ] && seeds="$seeds tests/fuzz/corpus/$t"
    [ -d "$work/seeds/$t" ] && seeds="$seeds $work/seeds/$t"
    extra=""
    write_dict "$t" && extra="-dict=$work/$t.dict"
    case "$t" in fuzz_audio_probe) extra="$extra -max_len=65536" ;; fuzz_multipart) extra="$extra -max_len=16384" ;; esac
    # shellcheck disable=SC2086
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        "$bin" -max_total_time="$secs" -timeout=20 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$t-" $extra "$corpus" $seeds > "$work/$t.log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t.log" | tail -1)
    cov=$(grep -E '^#[0-9]+' "$work/$t.log" | sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/\1 \2 \3/p' | tail -1)
    if [ "$rc" -eq 0 ]; then
        echo "$t: ok (${runs:-0} runs)"
        # shellcheck disable=SC2086 # three numbers, split on purpose
        set -- $cov
        echo "    ${rate:-0} exec/s, cov ${1:-?} edges, ft ${2:-?}, corpus ${3:-?} inputs"
        pass=$((pass + 1))
    else
        echo "$t: CRASH (exit $rc after ${runs:-?} runs)"
        # the target's own complaint (fuzz_x: ...) with what follows, then the sanitizer's
        awk '/^fuzz_[a-z_]*: /{n=12} n&&n--' "$work/$t.log" | head -14
        grep -aE '^==[0-9]+==ERROR|runtime error|^SUMMARY|^ +#[0-9] |Test unit written' "$work/$t.log" | head -25
        crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$work/$t.log" | tail -1)
        if [ -n "$crash" ] && [ -f "$crash" ]; then
            echo "    input (hex, first 512 bytes): $(head -c 512 "$crash" | od -An -v -tx1 | tr -d ' \n')"
            echo "    reproduce: $bin $crash"
        fi
        cp "$work/$t.log" "$artifacts/$t.log"
        fail=$((fail + 1))
    fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
