#!/usr/bin/env bash
# Every test of the workspace: `cargo test --workspace --all-features`.
# fueltank-redis's tests start their own redis-server (and redis-cli) from the
# PATH: installed here first where this can (Debian's package, as root);
# otherwise this says what to install and stops before running anything.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "test.sh: installing redis-server for fueltank-redis's tests" >&2
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    else
        echo "test.sh: fueltank-redis's tests need redis-server on the PATH; install it" \
            "(sudo apt-get install redis-server, brew install redis, ...) and run ./test.sh again" >&2
        exit 1
    fi
fi
exec cargo test --workspace --all-features "$@"
