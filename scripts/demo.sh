#!/usr/bin/env bash
# The whole product on this machine, end to end: installs what is missing (scripts/install-deps.sh), builds the
# release binaries, starts PostgreSQL, Redis, S3 (s3s-fs), the API and one dispatcher with the process runner
# (scripts/stack.sh up; a stack already up is reused), then runs every workflow in examples/ with the command-line
# tool, `flow-like submit FILE --watch` (scripts/run-examples.py; docs/cli.md): each execution is admitted by the
# dispatcher, run by a flow-like-executor process and followed live, then read back through the HTTP API and
# checked; its status, timeline, per-node report and result document are printed. Exits non-zero when an example
# does not end as examples/README.md says.
#
#   scripts/demo.sh                    all examples
#   scripts/demo.sh retry map          some of them
#
# The stack keeps running afterwards: scripts/stack.sh status | down | clean.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

# The example runner needs only python3's standard library.
if ! command -v python3 >/dev/null; then
    echo "demo: installing python3" >&2
    if [[ $EUID -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 >/dev/null
fi

scripts/stack.sh up

status=0
python3 scripts/run-examples.py "$@" || status=$?

cat <<'EOF'

The stack keeps running: scripts/stack.sh status | down | clean. Logs: .state/logs/ (the executors' lines are in
flow-like-dispatcher.log). Settings for curl and redis-cli: set -a; . .state/env; set +a

Try the command-line tool next (docs/cli.md):
  set -a; . .state/env; set +a; PATH="$PWD/target/release:$PATH"
  export FLOWLIKE_URL="http://$API_LISTEN"
  export FLOWLIKE_TOKEN="$(flow-like --token "$FLOWLIKE_ADMIN_TOKEN" tenants create-key demo)"
  flow-like list --label source=demo                      # the demo's executions
  flow-like submit examples/invoice.json --input examples/invoice.input.json --watch
  flow-like why <id>; flow-like logs <id>; flow-like result <id>
  flow-like queue
  flow-like --token "$FLOWLIKE_ADMIN_TOKEN" dead-letters list
EOF
exit "$status"
