# The tools that check deploy/ (tests/test_deploy_files.py): Debian's docker-compose, which
# parses compose files without an engine, and helm, built once from the Go module proxy
# into the cache. Sourced by scripts/test.sh after scripts/common.sh.
# shellcheck shell=bash

HELM_MODULE="helm.sh/helm/v4/cmd/helm"
HELM_VERSION="${SLUICE_HELM_VERSION:-v4.3.2}"

# Exports SLUICE_HELM when helm is (or can be built into) the cache; a Go toolchain is
# needed once (~5 min on 2 cores), then never again.
ensure_helm() {
    local dir="$SLUICE_CACHE/helm-$HELM_VERSION" started
    if [ ! -x "$dir/helm" ]; then
        if ! command -v go >/dev/null; then
            echo "==> helm is not built and Go is missing: the Helm chart checks will be skipped"
            return 1
        fi
        started="$(now)"
        echo "==> building helm $HELM_VERSION once into $dir (~5 min)"
        mkdir -p "$dir"
        GOBIN="$dir" GOFLAGS=-mod=mod go install "$HELM_MODULE@$HELM_VERSION" >"$dir/build.log" 2>&1 || {
            echo "==> helm did not build (see $dir/build.log): the Helm chart checks will be skipped"
            return 1
        }
        echo "==> helm built in $(since "$started") s"
    fi
    export SLUICE_HELM="$dir/helm"
}

ensure_docker_compose() {
    command -v docker-compose >/dev/null && return
    apt_install docker-compose \
        || echo "==> docker-compose could not be installed: the compose file checks will be skipped"
}
