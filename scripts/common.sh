# Shared by scripts/run.sh and scripts/test.sh: the virtualenv and a reachable Redis.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

ensure_venv() {
    local extras="$1"
    if ! command -v python3 >/dev/null; then
        echo "python3 (3.11+) is required: sudo apt-get install -y python3 python3-venv python3-dev build-essential cmake" >&2
        exit 1
    fi
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    # shellcheck disable=SC1091
    . "$VENV/bin/activate"
    local stamp="$VENV/.installed-$extras"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        echo "==> installing Sluice with extras [$extras] into .venv (the first run compiles llama.cpp: ~6 min)"
        python -m pip install --quiet --upgrade pip
        python -m pip install --quiet -e "$ROOT[$extras]"
        touch "$stamp"
    fi
}

redis_answers() {
    python - "$1" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
except Exception:
    sys.exit(1)
PY
}

free_port() {
    python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Sets REDIS_URL to a Redis that answers: the configured one, the local default,
# or a private redis-server started on a free port (stopped when the script exits).
ensure_redis() {
    if [ -n "${REDIS_URL:-}" ]; then
        redis_answers "$REDIS_URL" && return
        echo "REDIS_URL=$REDIS_URL does not answer" >&2
        exit 1
    fi
    if redis_answers "redis://127.0.0.1:6379/0"; then
        export REDIS_URL="redis://127.0.0.1:6379/0"
        return
    fi
    if ! command -v redis-server >/dev/null; then
        echo "No Redis answers on 127.0.0.1:6379 and redis-server is not installed." >&2
        echo "Install it with: sudo apt-get install -y redis-server   (or set REDIS_URL)" >&2
        exit 1
    fi
    local port dir
    port="$(free_port)"
    dir="$(mktemp -d)"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    PRIVATE_REDIS_PIDFILE="$dir/redis.pid"
    trap 'kill "$(cat "$PRIVATE_REDIS_PIDFILE")" 2>/dev/null' EXIT
    export REDIS_URL="redis://127.0.0.1:$port/0"
    for _ in $(seq 50); do redis_answers "$REDIS_URL" && break; sleep 0.1; done
    echo "==> started a private redis-server on port $port"
}
