#!/usr/bin/env bash
# The whole test suite: set-up, lint, type check, then unit, integration (real OpenBao) and
# swarm (real Docker Swarm) tests. With CI=true a missing real dependency fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh
if [ -x scripts/ensure-docker.sh ]; then ./scripts/ensure-docker.sh; fi

echo "== ruff check";         .venv/bin/ruff check .
echo "== ruff format";        .venv/bin/ruff format --check .
echo "== mypy --strict";      .venv/bin/mypy --strict entrypoint
echo "== pytest"
# pytest exits 5 when it collected nothing: that is a failure here as well.
.venv/bin/python -m pytest "$@"
