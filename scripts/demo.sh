#!/usr/bin/env bash
# Brings the local stack up (scripts/stack.sh up) and submits the example workflow in examples/ through the HTTP
# API, then shows the execution as the API, PostgreSQL and Redis each record it.
#
# The dispatch loop is not built yet, so the execution stays queued: the demo shows it committed in
# PostgreSQL and waiting on its tenant's queue lane in Redis.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
scripts/stack.sh up
set -a; . .state/env; set +a
API="http://$API_LISTEN"
export PATH="$PATH:$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"

step() { printf '\n== %s\n' "$*"; }

step "issue an API key for tenant demo (admin token from .state/env)"
KEY=$(curl -sf -X POST -H "Authorization: Bearer $FLOWLIKE_ADMIN_TOKEN" "$API/api/v1/tenants/demo/api-keys" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
echo "key: ${KEY:0:20}..."

step "submit examples/order-report.json"
BODY=$(python3 - <<'PY'
import json
print(json.dumps({
    "workflow": json.load(open("examples/order-report.json")),
    "input": json.load(open("examples/order-report.input.json")),
    "labels": {"source": "demo"},
}))
PY
)
RESPONSE=$(curl -sf -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -H "Idempotency-Key: demo-$(date +%s%N)" -d "$BODY" "$API/api/v1/executions")
echo "$RESPONSE" | python3 -m json.tool
ID=$(echo "$RESPONSE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

step "GET /api/v1/executions/$ID"
curl -sf -H "Authorization: Bearer $KEY" "$API/api/v1/executions/$ID" | python3 -m json.tool

step "PostgreSQL: the durable record"
psql "$DATABASE_URL" -c "SELECT id, tenant, workflow_name, status, priority, queued_at FROM executions WHERE id = '$ID'"

step "Redis: the queue lane (XRANGE), its consumer group (XINFO GROUPS) and the queued index"
RCLI=(redis-cli -u "$REDIS_URL")
"${RCLI[@]}" XRANGE "$REDIS_PREFIX:queue:demo:p5" - + COUNT 5
"${RCLI[@]}" XINFO GROUPS "$REDIS_PREFIX:queue:demo:p5"
"${RCLI[@]}" HGET "$REDIS_PREFIX:queued" "$ID"

step "GET /api/v1/queue"
curl -sf -H "Authorization: Bearer $KEY" "$API/api/v1/queue" | python3 -m json.tool

printf '\nThe stack keeps running: scripts/stack.sh status | down.\n'
