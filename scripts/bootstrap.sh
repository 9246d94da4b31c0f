#!/usr/bin/env bash
# Set up a Debian 12 machine for myrouter: system packages, then .venv with the
# package installed editable. Idempotent and quiet on a second run (no apt, no pip).
# Runs as root or as a user with sudo; never prompts.
#
# usage: bash scripts/bootstrap.sh            # packages + .venv
#        bash scripts/bootstrap.sh --packages  # system packages only
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# mariadb-server/-client: the local test bed (myrouter_testbed.mariadb); sysbench: benchmarks;
# libmariadb-dev, pkg-config, gcc, python3-dev: to build mysqlclient (a test dependency);
# python3-venv: .venv; docker-compose: compose/; make: the Makefile; openssl: hashed
# certificate directories in the TLS tests (openssl rehash); etcd-server/-client: the etcd
# test bed of the [cluster] tests (myrouter_testbed.etcd).
PACKAGES=(mariadb-server mariadb-client sysbench libmariadb-dev pkg-config gcc python3-dev
          python3-venv docker-compose make openssl etcd-server etcd-client)
VENV=.venv
STAMP="$VENV/.installed-stamp"

log() { printf 'bootstrap: %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        log "need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing ${missing[*]} and no apt-get: install them by hand" >&2
        exit 1
    fi
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

setup_venv() {
    local python="${PYTHON:-python3}"
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV with $("$python" --version 2>&1)"
        "$python" -m venv "$VENV"
        rm -f "$STAMP"
    fi
    if [ -f "$STAMP" ] && [ ! pyproject.toml -nt "$STAMP" ]; then
        return 0
    fi
    log "pip install -e '.[test,fast]'"
    "$VENV/bin/python" -m pip install --quiet -e '.[test,fast]'
    touch "$STAMP"
}

# The compiled kernels (myrouter/protocol/kernels.py: a .py with a .pxd beside it, anywhere under
# myrouter/): `pip install -e` builds them in place; after that they are rebuilt here when a source
# is newer than the built module (an edit, a checkout), a second or so each, so `make test` never
# tests a stale build (the loader would not use it, and the kernels' tests would fail).
build_kernels() {
    local pxd name so suffix stale=()
    suffix=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
    for pxd in $(find myrouter -name '*.pxd' | sort); do
        name="${pxd%.pxd}"
        so="$name$suffix"
        if [ ! -f "$so" ] || [ -n "$(find "$name.py" "$pxd" setup.py myrouter/protocol/kernels.py -newer "$so")" ]; then
            stale+=("$name")
        fi
    done
    if [ "${#stale[@]}" -eq 0 ]; then
        return 0
    fi
    log "building the compiled kernels (${stale[*]})"
    "$VENV/bin/python" setup.py --quiet build_ext --inplace
}

install_packages
if [ "${1:-}" != "--packages" ]; then
    setup_venv
    build_kernels
fi
