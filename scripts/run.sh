#!/usr/bin/env bash
# Start the whole service on the embedded defaults: web + chat worker + ingest worker.
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"
# shellcheck source=scripts/services.sh
. "$ROOT/scripts/services.sh"
cd "$ROOT"
ensure_venv "local,postgres"
ensure_redis
export DATA_DIR="${DATA_DIR:-$ROOT/data}"
export PORT="${PORT:-8000}"
mkdir -p "$DATA_DIR"
python -m backend migrate
echo "==> Sluice on http://127.0.0.1:$PORT  (API docs: /docs)"
# The Procfile's processes under supervisord: one that crashes is restarted (with a
# back-off if it keeps crashing), the others keep running; its log says so.
# Not exec: the EXIT trap must stop a private redis-server when supervisord ends.
python scripts/supervise.py
