#!/usr/bin/env bash
# Chart checks: strict lint, render matrix, Kubernetes schema validation (1.33 and the newest shipped), env-name
# contract against the real binaries, RBAC, Pod Security "restricted", NetworkPolicies, byte-identical renders,
# the secret generator's script against a stand-in Kubernetes API (curl), the Redis ACL file against a real
# redis-server, `helm package`, and the values documentation. Needs no cluster and no Docker.
#
# FLOWLIKE_BIN_DIR: directory with flow-like-api, flow-like-dispatcher and flow-like-executor; when unset the
# debug binaries are built with cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import helm_python, kubernetes_validate, pytest, yaml' 2>/dev/null; then
    python3 -m pip install --quiet helm-python-sdk kubernetes-validate pytest pyyaml
fi

if ! command -v redis-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    # Optional: the ACL test is skipped without it.
    (apt-get install -y -qq redis-server >/dev/null 2>&1 || true)
fi
if ! command -v curl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    # Optional: the secret generator tests are skipped without it.
    (apt-get install -y -qq curl >/dev/null 2>&1 || true)
fi

if [[ -z "${FLOWLIKE_BIN_DIR:-}" ]]; then
    # The same feature set as the test build (one workspace build), so nothing is compiled twice.
    cargo build --quiet --workspace --bins
fi

exec python3 -m pytest tests/chart -q "$@"
