#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL, Redis and S3 servers (started on demand by the tests'
# shared service pool), then stops those servers, also when tests fail. Exits with the tests' exit code.
#
#   scripts/test.sh [nextest args...]    e.g. scripts/test.sh -E 'test(services)'
#
# Uses cargo-nextest when installed (each test in its own process), else `cargo test` (args are then passed to
# `cargo test` instead). FLOWLIKE_TEST_STATE moves the pool's state directory (default target/test-services).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1

"$REPO/scripts/install-deps.sh" || exit $?

stop_services() {
    # The helper (tools/services) is built with the tests. When it does not compile right now, the binary of the
    # last good build (the one that started any running servers) still knows how to stop them.
    local prebuilt="${CARGO_TARGET_DIR:-$REPO/target}/debug/flow-like-test-services"
    cargo run --quiet -p flow-like-test-services --bin flow-like-test-services -- stop 2>/dev/null \
        || { [[ -x $prebuilt ]] && "$prebuilt" stop; } \
        || echo "test.sh: could not stop the shared test services (target/test-services)" >&2
}
trap stop_services EXIT

# Tests start the real binaries (executor, API, dispatcher) from target/: build them first.
cargo build --workspace --bins || exit $?

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace "$@"
else
    echo "test.sh: cargo-nextest not installed, using cargo test" >&2
    cargo test --workspace "$@"
fi
status=$?
exit "$status"
