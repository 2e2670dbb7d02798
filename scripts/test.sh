#!/usr/bin/env bash
# Run the test suite: on SQLite, then on PostgreSQL. Brings up what the suite needs: Redis,
# a private PostgreSQL cluster, a private Elasticsearch node and a private S3 server
# (SeaweedFS) (each unless configured: REDIS_URL, TEST_POSTGRES_URL, ELASTICSEARCH_URL,
# TEST_S3_ENDPOINT_URL), installing packages as root when missing.
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"
# shellcheck source=scripts/services.sh
. "$ROOT/scripts/services.sh"
# shellcheck source=scripts/deploy_tools.sh
. "$ROOT/scripts/deploy_tools.sh"
cd "$ROOT"
suite_started="$(now)"

ensure_venv "dev,local,postgres"
# Elasticsearch boots in the background (~20 s) while the rest is prepared.
ES_UNAVAILABLE=""
start_elasticsearch || true
command -v nginx >/dev/null || apt_install nginx-light \
    || echo "==> nginx could not be installed; the nginx proxy test will be skipped"
# The OCR tests render Chinese scans (tests/support/scanned_pages.py): a CJK font.
[ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || apt_install fonts-wqy-zenhei \
    || echo "==> no CJK font could be installed; the Chinese OCR tests will be skipped"
ensure_redis
ensure_docker_compose
ensure_helm || true
export TEST_REDIS_URL="${TEST_REDIS_URL:-${REDIS_URL%/*}/13}"
PG_UNAVAILABLE=""
ensure_postgres || true
S3_UNAVAILABLE=""
start_seaweedfs || true
if [ -n "$S3_UNAVAILABLE" ]; then
    if [ -n "${CI:-}" ]; then
        echo "==> an S3 server (SeaweedFS) is required in CI: $S3_UNAVAILABLE" >&2
        exit 1
    fi
    echo "==> S3 storage tests will be skipped: $S3_UNAVAILABLE"
    export SLUICE_S3_UNAVAILABLE="$S3_UNAVAILABLE"
fi
[ -z "$ES_UNAVAILABLE" ] && { wait_elasticsearch || true; }
if [ -n "$ES_UNAVAILABLE" ]; then
    echo "==> Elasticsearch tests will be skipped: $ES_UNAVAILABLE"
    export SLUICE_ES_UNAVAILABLE="$ES_UNAVAILABLE"
fi
echo "==> services ready after $(since "$suite_started") s"

# pytest exits 5 when it selected no test: with "$@" narrowing the run, that is not a failure.
run_pytest() { python -m pytest "$@" || { rc=$?; [ "$rc" = 5 ] || return "$rc"; }; }

echo "==> tests on SQLite"
run_pytest -m "not postgres_only" "$@"
if [ -n "$PG_UNAVAILABLE" ]; then
    if [ -n "${CI:-}" ]; then
        echo "==> PostgreSQL is required in CI: $PG_UNAVAILABLE" >&2
        exit 1
    fi
    echo "==> PostgreSQL pass skipped: $PG_UNAVAILABLE"
else
    echo "==> tests on PostgreSQL"
    TEST_DATABASE=postgres run_pytest -m "not sqlite_only" "$@"
fi
echo "==> make test took $(since "$suite_started") s"
