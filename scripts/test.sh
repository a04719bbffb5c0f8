#!/usr/bin/env bash
# Runs the whole test suite (unit, integration and slow tests) after an idempotent set-up.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow" -x
set -euo pipefail
cd "$(dirname "$0")/.."
# The Redis online-store tests run against a real redis-server.
MSPA_WITH_REDIS=1 scripts/setup.sh
VENV=${MSPA_VENV:-.venv}
# Fetched data is reused between runs on the same machine (never committed).
export MSPA_TEST_DATA_CACHE=${MSPA_TEST_DATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mspa-features/data}
mkdir -p "$MSPA_TEST_DATA_CACHE"
exec "$VENV/bin/python" -m pytest "$@"
