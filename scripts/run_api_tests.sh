#!/bin/sh
# run_api_tests.sh [VOXD_BIN] [pytest args...] - runs the black-box API suite
# (tests/api) against a real voxd binary (default build/voxd). Exit code is
# pytest's, except that "no tests collected" (5) counts as a failure.
set -u
cd "$(dirname "$0")/.." || exit 1
bin="${1:-${VOXD_BIN:-build/voxd}}"
[ $# -gt 0 ] && shift
case "$bin" in /*) ;; *) bin="$(pwd)/$bin" ;; esac
if [ ! -x "$bin" ]; then
    echo "run_api_tests: voxd binary not found: $bin" >&2
    exit 1
fi
export VOXD_BIN="$bin"
/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/api "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "run_api_tests: no tests were collected" >&2
    exit 1
fi
exit "$rc"
