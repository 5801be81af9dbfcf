#!/usr/bin/env bash
# The contract run, against a live API with a dispatcher behind it. Started by the ignored test
# `schemathesis_and_the_generated_client_against_the_stack` (tests/tests/api_contract.rs), which provides:
#   FLOWLIKE_API_URL, FLOWLIKE_ADMIN_KEY (an admin key of tenant fuzz-admin), FLOWLIKE_TENANT_KEY (a plain key of
#   tenant fuzz), FLOWLIKE_CLIENT_KEY and FLOWLIKE_CLIENT_DEAD_EXECUTION (for the generated client's test);
# and by scripts/check-api-contract.sh: FLOWLIKE_CONTRACT_VENV (Schemathesis, openapi-spec-validator) and
# FLOWLIKE_CONTRACT_CLIENT (the client generated from docs/openapi.json).
# Fails on the first step that finds anything; reports land in target/contract-report/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${FLOWLIKE_CONTRACT_VENV:?}"
document="$root/docs/openapi.json"
reports="$root/target/contract-report"
mkdir -p "$reports"
# Examples per operation and phase; CI keeps the default, a deeper local run sets more.
examples="${FLOWLIKE_CONTRACT_EXAMPLES:-40}"
seed="${FLOWLIKE_CONTRACT_SEED:-20261202}"

echo "contract: openapi-spec-validator $document"
"$venv/bin/openapi-spec-validator" "$document"

# The client first: the admin fuzzing below redrives every dead letter it finds, the client's among them.
echo "contract: the generated client against the stack"
PYTHONPATH="$FLOWLIKE_CONTRACT_CLIENT" "$venv/bin/python" "$here/client_test.py"

fuzz() {
    local who=$1 key=$2
    shift 2
    echo "contract: schemathesis as $who (all checks, all phases, positive and negative data, seed $seed)"
    "$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run "$document" \
        --url "$FLOWLIKE_API_URL" \
        --header "Authorization: Bearer $key" \
        --checks all --mode all \
        --phases examples,coverage,fuzzing,stateful \
        --max-examples "$examples" --seed "$seed" \
        --workers 1 --request-timeout 15 --no-color --generation-database none \
        --report junit --report-dir "$reports/$who" \
        "$@"
}

# A tenant's key: everything a tenant does (the admin endpoints answer it 403 only, which the Rust tests cover).
fuzz tenant "$FLOWLIKE_TENANT_KEY" --exclude-tag admin
# An admin key: the admin endpoints (keys, limits, dead letters, redrive) as an operator uses them.
fuzz admin "$FLOWLIKE_ADMIN_KEY"

echo "contract: passed"
