#!/usr/bin/env bash
# Run the test suite: SQLite always; PostgreSQL too when it answers (always in CI).
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"
cd "$ROOT"
ensure_venv "dev,local,postgres"
if ! command -v nginx >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get install -y -qq nginx-light >/dev/null 2>&1 \
        || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq nginx-light >/dev/null 2>&1)) \
        || echo "==> nginx could not be installed; the nginx proxy test will be skipped"
fi
ensure_redis
export TEST_REDIS_URL="${TEST_REDIS_URL:-${REDIS_URL%/*}/13}"
echo "==> tests on SQLite"
python -m pytest "$@"
if [ -n "${CI:-}" ] || pg_isready -q -h 127.0.0.1 2>/dev/null; then
    echo "==> tests on PostgreSQL"
    TEST_DATABASE=postgres python -m pytest -m "not sqlite_only" "$@"
fi
