#!/usr/bin/env bash
# Validates docker-compose.yml (syntax, interpolation, depends_on conditions). No Docker engine is needed; images
# are neither built nor pulled.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-compose >/dev/null 2>&1; then
    apt-get install -y -qq docker-compose >/dev/null
fi

docker-compose -f docker-compose.yml config -q
echo "docker-compose.yml is valid"
