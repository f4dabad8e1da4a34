#!/usr/bin/env bash
# Installs what the compat suite needs; .ci/run calls it. Idempotent and quiet: safe to run twice.
#  * redis-server and redis-cli (apt packages redis-server, redis-tools), when missing;
#  * compat/ioredis/node_modules (npm ci from the committed package-lock.json), when missing
#    and npm exists.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
if [ "${#missing[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "compat/setup.sh: installing ${missing[*]}"
        $SUDO apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    else
        echo "compat/setup.sh: ${missing[*]} missing and no apt-get; the differential tests will be skipped" >&2
    fi
fi
# The Debian package starts a system redis-server on 6379; the tests start their own on free
# ports and never use it.

if [ ! -d ioredis/node_modules/ioredis ]; then
    if command -v npm >/dev/null 2>&1; then
        echo "compat/setup.sh: npm ci in compat/ioredis"
        (cd ioredis && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    else
        echo "compat/setup.sh: npm missing; the ioredis test will be skipped" >&2
    fi
fi
