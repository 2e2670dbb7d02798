#!/usr/bin/env bash
# The scale-out bench (bench/bench_scaleout.py) on the services `make test` starts: Redis, a
# private PostgreSQL cluster (its `postgres` database, thrown away at exit), Elasticsearch
# and SeaweedFS's S3. Arguments go to the bench, e.g. --answers 400 --concurrency 20.
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"
# shellcheck source=scripts/services.sh
. "$ROOT/scripts/services.sh"
cd "$ROOT"
ensure_venv "dev,local,postgres"
ES_UNAVAILABLE=""
start_elasticsearch
ensure_redis
ensure_postgres
start_seaweedfs
wait_elasticsearch
export BENCH_DATABASE_URL="$TEST_POSTGRES_URL"
python -m bench.bench_scaleout "$@"
