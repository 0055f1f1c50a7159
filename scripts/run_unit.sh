#!/bin/sh
# run_unit.sh BUILD_DIR - runs every unit test binary in BUILD_DIR/tests and
# prints a closing "unit: N passed, N failed" line (test binaries print their
# own per-file lines). Exit 1 if any test failed or crashed.
set -u
dir="$1/tests"
pass=0; fail=0
for t in "$dir"/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d|*.o) continue ;; esac
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E 'FAIL|failed:|ERROR|runtime error|Sanitizer' | head -40
    line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -1)
    p=$(printf '%s' "$line" | sed -n 's/.* \([0-9][0-9]*\) passed.*/\1/p'); p=${p:-0}
    f=$(printf '%s' "$line" | sed -n 's/.* \([0-9][0-9]*\) failed.*/\1/p'); f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "CRASH $(basename "$t") (exit $rc)"; printf '%s\n' "$out" | tail -30; f=1
    fi
    echo "$(basename "$t"): $p passed, $f failed"
    pass=$((pass + p)); fail=$((fail + f))
done
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
