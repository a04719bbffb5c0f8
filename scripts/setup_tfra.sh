#!/usr/bin/env bash
# Idempotent set-up of the TFRA ranker environment (.venv-tfra), separate from the main one:
# TensorFlow Recommenders-Addons 0.8.1 needs tensorflow==2.16.2, numpy<2 and protobuf<5, which
# cannot share an environment with feast 0.67 (STACK_NOTES). The main environment drives it
# through files (ranker_hooks/rankers/tfra_ranker.py runs ranker_hooks/rankers/tfra_worker.py with this python).
# A second run with this script unchanged reuses the environment and returns in seconds.
#   MSPA_TFRA_VENV   where the environment lives (default: .venv-tfra in the repo)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MSPA_TFRA_VENV:-.venv-tfra}
PY=${MSPA_PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
SETUP_TAG=setup-tfra
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

# The pins, in one place: the stamp covers this script, so editing them rebuilds the environment.
PINS=(
  "tensorflow==2.16.2"
  "tf-keras==2.16.0"
  "tensorflow-recommenders-addons==0.8.1"
  "numpy<2"
  "protobuf<5"
)

stamp_want=$( (cat scripts/setup_tfra.sh; "$PY" --version) | sha256sum | cut -c1-16)
stamp_file="$VENV/.mspa-setup-stamp"
if [[ -f $stamp_file && $(cat "$stamp_file") == "$stamp_want" ]]; then
  log "environment $VENV is up to date"
  exit 0
fi

log "creating environment in $VENV"
start=$SECONDS
# --clear: a half-built environment from an interrupted run starts over.
"$PY" -m venv --clear "$VENV"
pipq --upgrade pip
pipq "${PINS[@]}"
# The worker's imports, exactly as it runs them (legacy Keras is what TFRA 0.8.1 builds on).
TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" -c "
import numpy, tensorflow as tf, tensorflow_recommenders_addons.dynamic_embedding as de
assert tf.__version__ == '2.16.2', tf.__version__
assert int(numpy.__version__.split('.')[0]) < 2, numpy.__version__
" || die "environment check failed"
echo "$stamp_want" > "$stamp_file"
log "environment ready: $VENV ($((SECONDS - start)) s)"
