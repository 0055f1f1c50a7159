#!/bin/sh
# idle_connections.sh [N] - builds bench/idle_connections.c against a voxd
# build's libvoxd.a ($BUILD, default build/) and prints the server's resident
# memory per idle WebSocket and per idle SSE connection (N each, default 1000).
set -eu
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
make --no-print-directory BUILD="$BUILD" "$BUILD/libvoxd.a" >/dev/null
# the link line of the unit tests, read from the Makefile so that it stays in step
vars=$(printf 'print-vars:\n\t@echo "$(PKG_CFLAGS)|$(PKG_LIBS)"\n' | make --no-print-directory -s -f Makefile -f - print-vars)
out="$BUILD/bench/idle_connections"
mkdir -p "$BUILD/bench"
# shellcheck disable=SC2086
cc -std=c17 -D_GNU_SOURCE -O2 -pthread -Isrc ${vars%%|*} bench/idle_connections.c \
    "$BUILD/libvoxd.a" ${vars#*|} -lcurl -o "$out"
"$out" "${1:-1000}"
