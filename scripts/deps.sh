#!/bin/sh
# deps.sh - installs the Debian packages voxd needs to build, run and test,
# only those missing (fast no-op when all are present). Runs apt-get as root
# or through sudo. Used by `make run` and `make test`.
set -eu
PKGS="build-essential pkg-config libmicrohttpd-dev libwslay-dev libjansson-dev libsqlite3-dev
libsodium-dev libavformat-dev libavcodec-dev libswresample-dev libavutil-dev libebur128-dev
libcurl4-openssl-dev ffmpeg python3 python3-pytest python3-requests python3-websockets wrk
libpq-dev postgresql libhiredis-dev redis-server clang libclang-rt-14-dev
pocketsphinx-en-us libpocketsphinx-dev libsphinxbase-dev espeak-ng zlib1g-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# node/npm run the S3 test server; any install will do (Debian's if none).
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
