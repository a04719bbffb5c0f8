#!/usr/bin/env bash
# Runs the whole test suite (unit, integration and slow tests) after an idempotent set-up.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow" -x
set -euo pipefail
cd "$(dirname "$0")/.."
# The Redis online-store tests run against a real redis-server; the ZeRO-2/3 test needs deepspeed;
# the gallery test opens its page in the distribution's headless chromium.
MSPA_WITH_REDIS=1 MSPA_WITH_CHROMIUM=1 MSPA_WITH_DEEPSPEED=1 scripts/setup.sh
# The TFRA ranker backend's own environment (it cannot share numpy/protobuf with feast); its
# tests drive it from the main environment through MSPA_TFRA_PYTHON.
scripts/setup_tfra.sh
tfra_venv=${MSPA_TFRA_VENV:-.venv-tfra}
[[ $tfra_venv == /* ]] || tfra_venv=$PWD/$tfra_venv
export MSPA_TFRA_PYTHON=${MSPA_TFRA_PYTHON:-$tfra_venv/bin/python}
VENV=${MSPA_VENV:-.venv}
# Fetched data is reused between runs on the same machine (never committed).
export MSPA_TEST_DATA_CACHE=${MSPA_TEST_DATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mspa-features/data}
mkdir -p "$MSPA_TEST_DATA_CACHE"
# The slowest tests close the log, so a CI run says where its time went.
exec "$VENV/bin/python" -m pytest --durations=25 "$@"
