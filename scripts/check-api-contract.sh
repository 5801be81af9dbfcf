#!/usr/bin/env bash
# The API contract check (run by .ci/run): validates docs/openapi.json with openapi-spec-validator, generates a
# Python client from it, and runs Schemathesis (all checks, stateful, negative data) and the client's test
# against a real API with a dispatcher behind it (tests/contract/run.sh, started by the ignored test
# `schemathesis_and_the_generated_client_against_the_stack`, which brings up PostgreSQL, Redis and S3).
# The Python tools are pinned and live in their own virtualenv under target/.
# Usage: scripts/check-api-contract.sh     FLOWLIKE_CONTRACT_EXAMPLES=200 for a deeper run.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
SPEC_VALIDATOR_VERSION=0.9.0
CLIENT_GENERATOR_VERSION=0.29.1

venv="$PWD/target/contract-venv"
stamp="$venv/.versions"
want="schemathesis==$SCHEMATHESIS_VERSION openapi-spec-validator==$SPEC_VALIDATOR_VERSION openapi-python-client==$CLIENT_GENERATOR_VERSION"
if [[ ! -x $venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "check-api-contract: installing $want into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --quiet --disable-pip-version-check $want
    echo "$want" >"$stamp"
fi

client="$PWD/target/contract-client"
rm -rf "$client"
mkdir -p "$client"
"$venv/bin/openapi-python-client" generate --path docs/openapi.json --meta none \
    --output-path "$client/flow_like_client" >"$client/generate.log" 2>&1 || {
    cat "$client/generate.log" >&2
    exit 1
}
# The generator reports what it could not turn into code; anything beyond the known line fails the check.
if grep -q "WARNING" "$client/generate.log"; then
    cat "$client/generate.log" >&2
    echo "check-api-contract: the client generator could not express part of docs/openapi.json" >&2
    exit 1
fi

# Executors log every attempt at info; the run reads better with warnings only.
RUST_LOG="${RUST_LOG:-warn}" FLOWLIKE_CONTRACT_VENV="$venv" FLOWLIKE_CONTRACT_CLIENT="$client" \
    FLOWLIKE_CONTRACT_RUNNER="$PWD/tests/contract/run.sh" \
    cargo nextest run -p flow-like-tests --test api_contract --run-ignored only --no-capture \
    -E 'test(schemathesis_and_the_generated_client_against_the_stack)'
echo "check-api-contract: passed"
