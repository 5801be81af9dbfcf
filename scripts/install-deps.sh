#!/usr/bin/env bash
# Installs what the tests and the local stack need, skipping whatever is already there:
#   Debian packages: redis-server, postgresql (initdb, pg_ctl, postgres), postgresql-contrib (pgbench),
#                    docker-compose (only to validate docker-compose.yml), prometheus (for promtool: the
#                    metrics lint and the alert-rule tests; its service is not started);
#   cargo:           s3s-fs 0.14.1 (S3 over a directory, with real SigV4 checks);
#   pip:             helm-python-sdk, kubernetes-validate, pytest, pyyaml (chart checks).
# The distro's PostgreSQL and Redis services are not started: tests and scripts/stack.sh run their own.
# Usage: scripts/install-deps.sh   (as root, or as a user with sudo)
set -euo pipefail

S3S_FS_VERSION=0.14.1
APT_PACKAGES=(redis-server postgresql postgresql-contrib docker-compose prometheus)
# pip package name -> module it provides
PIP_PACKAGES=(helm-python-sdk:helm_python kubernetes-validate:kubernetes_validate pytest:pytest pyyaml:yaml)

installed=()
log() { echo "install-deps: $*" >&2; }

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        log "need root (or sudo) to run: $*"
        exit 1
    fi
}

apt_missing() {
    local pkg missing=()
    for pkg in "$@"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    echo "${missing[@]:-}"
}

install_apt() {
    local missing
    read -r -a missing <<<"$(apt_missing "${APT_PACKAGES[@]}")"
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "apt-get install ${missing[*]}"
    # policy-rc.d exit 101 tells the packages' maintainer scripts not to start their services.
    local policy=/usr/sbin/policy-rc.d created_policy=""
    if [[ ! -e $policy ]]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        created_policy=1
    fi
    local status=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || status=$?
    if [[ $status -eq 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null || status=$?
    fi
    [[ -n $created_policy ]] && as_root rm -f "$policy"
    if [[ $status -ne 0 ]]; then
        log "apt-get failed ($status)"
        exit "$status"
    fi
    installed+=("${missing[@]}")
}

install_s3s_fs() {
    local cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
    local bin
    bin="$(command -v s3s-fs || true)"
    [[ -z $bin && -x $cargo_bin/s3s-fs ]] && bin="$cargo_bin/s3s-fs"
    if [[ -n $bin ]] && "$bin" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
        return 0
    fi
    if ! command -v cargo >/dev/null; then
        log "cargo is needed to install s3s-fs (install Rust first)"
        exit 1
    fi
    log "cargo install s3s-fs@$S3S_FS_VERSION (about 1.5 minutes, once)"
    cargo install "s3s-fs@$S3S_FS_VERSION" --locked --features binary --quiet
    installed+=("s3s-fs@$S3S_FS_VERSION")
}

install_pip() {
    local python
    python="$(command -v python3 || true)"
    if [[ -z $python ]]; then
        log "python3 not found: skipping the chart-check packages (${PIP_PACKAGES[*]%%:*})"
        return 0
    fi
    local missing=() entry
    for entry in "${PIP_PACKAGES[@]}"; do
        if ! "$python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('${entry#*:}') is None)" 2>/dev/null; then
            missing+=("${entry%%:*}")
        fi
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "pip install ${missing[*]}"
    "$python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
    installed+=("${missing[@]}")
}

install_apt
install_s3s_fs
install_pip

if [[ ${#installed[@]} -eq 0 ]]; then
    log "all dependencies present"
else
    log "installed: ${installed[*]}"
fi
