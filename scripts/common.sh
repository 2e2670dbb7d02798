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
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] \
        || [ "$ROOT/scripts/common.sh" -nt "$stamp" ]; then
        echo "==> installing Sluice with extras [$extras] into .venv"
        python -m pip install --quiet --upgrade pip
        local find_links=()
        if [[ ",$extras," == *",local,"* ]]; then
            build_llama_wheel
            find_links=(--find-links "$LLAMA_WHEELHOUSE")
        fi
        python -m pip install --quiet "${find_links[@]}" -e "$ROOT[$extras]"
        if [ ${#find_links[@]} -gt 0 ]; then  # replaces a native build an older venv holds
            python -m pip install --quiet --no-deps --force-reinstall "$LLAMA_WHEELHOUSE"/*.whl
        fi
        touch "$stamp"
    fi
}

# llama.cpp compiles for the build machine's CPU by default (-march=native), and on x86 that
# includes AMX tile code which faults inside VMs that don't grant AMX state: every generation
# dies with SIGSEGV. Build the pinned version once for x86-64-v3 (AVX2/FMA/F16C) into a
# wheelhouse keyed by version and flags, outside pip's cache, whose sdist builds ignore flags.
LLAMA_VERSION="$(sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' "$ROOT/pyproject.toml")"
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
[ "$(uname -m)" = x86_64 ] || LLAMA_CMAKE_ARGS="-DGGML_NATIVE=ON"
LLAMA_WHEELHOUSE="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/llama-$LLAMA_VERSION-$(echo "$LLAMA_CMAKE_ARGS" | cksum | cut -d' ' -f1)"

build_llama_wheel() {
    if ls "$LLAMA_WHEELHOUSE"/llama_cpp_python-*.whl >/dev/null 2>&1; then
        return
    fi
    echo "==> compiling llama.cpp $LLAMA_VERSION once into $LLAMA_WHEELHOUSE (~6 min)"
    mkdir -p "$LLAMA_WHEELHOUSE"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" python -m pip wheel --quiet --no-cache-dir --no-deps \
        --wheel-dir "$LLAMA_WHEELHOUSE" "llama-cpp-python==$LLAMA_VERSION"
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
