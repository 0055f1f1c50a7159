#!/bin/sh
# test.sh - everything `make test` runs, in order: unit tests, unit tests
# under ASan+UBSan, the black-box API suite against the release binary and
# again against the sanitizer binary, the store unit tests on PostgreSQL (a
# throw-away cluster on loopback), the API suite plus tests/cluster in
# cluster mode (PostgreSQL + S3 test server + Redis, 2 API nodes and 2
# worker processes per test server), and a short run of every fuzzer. Prints one
# closing line "total: N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0; log=$(mktemp -d)
count() { # file: adds the last "N passed" / "N failed" figures of a log
    line=$(grep -E '[0-9]+ (passed|failed)' "$1" | tail -1)
    p=$(printf '%s' "$line" | sed -n 's/.*[^0-9]\([0-9][0-9]*\) passed.*/\1/p; s/^\([0-9][0-9]*\) passed.*/\1/p' | head -1)
    f=$(printf '%s' "$line" | sed -n 's/.*[^0-9]\([0-9][0-9]*\) failed.*/\1/p; s/^\([0-9][0-9]*\) failed.*/\1/p' | head -1)
    pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
}
step() { # name command...: runs a step, shows its output, counts its closing line
    name=$1; shift
    echo "== $name"
    "$@" > "$log/$name.log" 2>&1; rc=$?
    cat "$log/$name.log"
    count "$log/$name.log"
    if [ "$rc" -ne 0 ] && ! grep -qE '[1-9][0-9]* failed' "$log/$name.log"; then
        echo "$name: exited $rc"; fail=$((fail + 1))
    fi
}
step unit scripts/run_unit.sh build
step unit-asan sh -c 'make --no-print-directory asan >/dev/null && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 scripts/run_unit.sh build-asan'
step api scripts/run_api_tests.sh build/voxd
step api-asan env VOXD_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:log_path=/tmp/voxd-asan UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    scripts/run_api_tests.sh build-asan/voxd
step unit-postgres scripts/with_postgres.sh scripts/run_unit.sh build
step api-cluster tests/cluster/run.sh build/voxd
step fuzz scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
rm -rf "$log"
echo "total: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
