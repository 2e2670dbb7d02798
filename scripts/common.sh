# Shared by scripts/run.sh and scripts/test.sh: system packages, the virtualenv, clean-up
# at exit, free ports and the unprivileged user that servers run as.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
SLUICE_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sluice"
# PostgreSQL and Elasticsearch refuse to run as root: as root, servers run as this user.
SERVICE_USER="${SLUICE_SERVICE_USER:-sluice}"

# --- clean-up: every started server registers how to stop it; one EXIT trap runs them all.
CLEANUPS=()
on_exit() {
    local i
    for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${CLEANUPS[$i]}" || true; done
}
trap on_exit EXIT
add_cleanup() { CLEANUPS+=("$1"); }

is_root() { [ "$(id -u)" = 0 ]; }

now() { date +%s.%N; }
# Seconds since a `now` reading, one decimal.
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Installs Debian packages when we are root on a machine with apt-get (a bare CI box);
# refreshes the package lists once if the first try cannot find them. Returns 1 otherwise.
apt_install() {
    is_root && command -v apt-get >/dev/null || return 1
    echo "==> apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "$@" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$@" >/dev/null 2>&1; }
}

# A free port below the kernel's ephemeral range: a port the kernel hands out (bind to 0)
# can be taken by any outgoing connection before the server we start binds it (seen:
# Elasticsearch failing with "Address already in use" 8 s after the pick).
free_port() {
    python3 - <<'PY'
import random, socket
low, high = 20000, 32767
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
        high = min(high, int(ports.read().split()[0]) - 1)
except (OSError, ValueError):
    pass
for _ in range(500):
    port = random.randint(low, high)
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            continue
    print(port)
    break
else:
    raise SystemExit("no free port")
PY
}

ensure_service_user() {
    id -u "$SERVICE_USER" >/dev/null 2>&1 \
        || useradd --system --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
}

# Runs a command as SERVICE_USER when we are root, else as ourselves.
as_service_user() {
    if ! is_root; then
        "$@"
        return
    fi
    ensure_service_user
    (cd / && runuser -u "$SERVICE_USER" -- "$@")
}

# A private directory for one server's data, owned by the user the server runs as and
# removed at exit.
service_dir() {
    local dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/sluice-$1.XXXXXX")"
    chmod 755 "$dir"
    if is_root; then
        ensure_service_user
        chown "$SERVICE_USER" "$dir"
    fi
    add_cleanup "rm -rf '$dir'"
    echo "$dir"
}

ensure_build_tools() {
    local missing=()
    command -v cc >/dev/null || missing+=(build-essential)
    command -v cmake >/dev/null || missing+=(cmake)
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv python3-dev)
    [ ${#missing[@]} -eq 0 ] && return
    apt_install "${missing[@]}" && return
    echo "Missing ${missing[*]}: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
}

ensure_venv() {
    local extras="$1"
    if ! command -v python3 >/dev/null; then
        apt_install python3 python3-venv python3-dev || {
            echo "python3 (3.11+) is required: sudo apt-get install -y python3 python3-venv python3-dev build-essential cmake" >&2
            exit 1
        }
    fi
    [ -x "$VENV/bin/python" ] || { ensure_build_tools && python3 -m venv "$VENV"; }
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
LLAMA_WHEELHOUSE="$SLUICE_CACHE/llama-$LLAMA_VERSION-$(echo "$LLAMA_CMAKE_ARGS" | cksum | cut -d' ' -f1)"

build_llama_wheel() {
    if ls "$LLAMA_WHEELHOUSE"/llama_cpp_python-*.whl >/dev/null 2>&1; then
        return
    fi
    ensure_build_tools
    echo "==> compiling llama.cpp $LLAMA_VERSION once into $LLAMA_WHEELHOUSE (~6 min)"
    mkdir -p "$LLAMA_WHEELHOUSE"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" python -m pip wheel --quiet --no-cache-dir --no-deps \
        --wheel-dir "$LLAMA_WHEELHOUSE" "llama-cpp-python==$LLAMA_VERSION"
}
