# shellcheck shell=bash
# Helpers shared by scripts/setup.sh and scripts/setup_tfra.sh. Sourced, never run: it defines
# functions only, so tests source it and call one helper at a time with stub commands on PATH
# (tests/unit/test_setup_scripts.py).
#   SETUP_TAG   prefix of log lines (default: setup)
#   VENV        the environment pipq installs into

log() { printf '[%s] %s\n' "${SETUP_TAG:-setup}" "$*" >&2; }
die() { log "$*"; exit 1; }

# pip, minus the noise of this machine's optional local indexes, keeping pip's exit status.
pipq() {
  "$VENV/bin/python" -m pip install -q "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }
  return "${PIPESTATUS[0]}"
}

# Runs a command as root: directly when we are root, through sudo otherwise. Environment
# assignments go through `env`, never as a prefix word: as root the prefix would be empty and
# bash would take `VAR=value` for the command name.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root to run '$*' (not root and no sudo): run it yourself, then rerun this script"
  fi
}

# Installs Debian packages; only reached when a system tool is missing.
apt_install() {
  command -v apt-get >/dev/null \
    || die "missing system packages ($*) and no apt-get here: install them, then rerun"
  log "installing $* with apt"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
    || die "apt-get update failed (needed for $*)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
    || die "apt-get install $* failed"
}

# Major version of the java on PATH (0 when there is none or it does not say).
java_major() {
  local v
  command -v java >/dev/null || { echo 0; return; }
  v=$(java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}')
  [[ $v =~ ^[0-9]+$ ]] && echo "$v" || echo 0
}

# Java 17+ for Spark 4.
ensure_java() {
  if [[ $(java_major) -lt 17 ]]; then
    apt_install openjdk-17-jre-headless
    [[ $(java_major) -ge 17 ]] || die "Java 17+ still not on PATH after installing it"
  fi
}

# redis-server for the Redis online-store tests.
ensure_redis() {
  command -v redis-server >/dev/null && return 0
  apt_install redis-server
  command -v redis-server >/dev/null || die "redis-server still not on PATH after installing it"
}

# The distribution's chromium and its chromedriver for the gallery's headless-browser test.
ensure_chromium() {
  has_chromium && return 0
  apt_install chromium chromium-driver
  has_chromium || die "chromium or chromedriver still not on PATH after installing them"
}
has_chromium() { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }

# llama.cpp's CPU kernels, chosen from the flags this CPU reports: AVX512 (+VNNI/VBMI/BF16)
# where present (measured 1.3-1.5x faster prompt processing than AVX2 alone), never AMX (the
# -march=native build segfaults on these VMs, which report AMX). The explicit flags keep the
# build off -march=native; the wheel is kept per flag set, so one built for another CPU is never
# reused (pip's own cache keys a built wheel by the source archive, not by CMAKE_ARGS).
#   MSPA_CPUINFO   file read for the CPU flags (default /proc/cpuinfo; tests point it elsewhere)
llama_cmake_args() {
  local cpu f
  cpu=" $(grep -m1 '^flags' "${MSPA_CPUINFO:-/proc/cpuinfo}" 2>/dev/null | cut -d: -f2) "
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

LLAMA_CPP_VERSION=0.3.36

# Prints the path of a llama-cpp-python wheel built for this CPU's flag set, building it into
# the wheel cache when none is there (~10-15 min on 2 cores). Fails (status 1, nothing printed)
# when the build produced no wheel.
#   MSPA_WHEEL_CACHE   folder of built wheels (default: $XDG_CACHE_HOME/mspa-features/wheels)
llama_cpp_wheel() {
  local args key dir wheel
  args=$(llama_cmake_args)
  key=$(printf '%s %s' "$LLAMA_CPP_VERSION" "$args" | sha256sum | cut -c1-12)
  dir=${MSPA_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mspa-features/wheels}/llama-cpp-$key
  if ! compgen -G "$dir/llama_cpp_python-$LLAMA_CPP_VERSION-*.whl" >/dev/null; then
    log "building llama-cpp-python $LLAMA_CPP_VERSION ($args)"
    mkdir -p "$dir"
    # Built in a temporary folder and moved in whole: a killed build leaves no partial wheel
    # that a later run would take for a good one.
    local tmp
    tmp=$(mktemp -d "$dir/.build-XXXXXX")
    if ! CMAKE_ARGS="$args" "$VENV/bin/python" -m pip wheel -q --no-cache-dir --no-deps \
        "llama-cpp-python==$LLAMA_CPP_VERSION" -w "$tmp" >&2; then
      rm -rf "$tmp"
      log "building llama-cpp-python $LLAMA_CPP_VERSION failed"
      return 1
    fi
    mv "$tmp"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl "$dir"/ 2>/dev/null
    rm -rf "$tmp"
  fi
  wheel=$(compgen -G "$dir/llama_cpp_python-$LLAMA_CPP_VERSION-*.whl" | head -n 1)
  [[ -n $wheel ]] || { log "no llama-cpp-python wheel in $dir"; return 1; }
  echo "$wheel"
}

# deepspeed (the `gpu` extra's ZeRO engine; its CPU test), installed when missing; torch stays
# pinned so pip cannot swap in a CUDA build.
ensure_deepspeed() {
  "$VENV/bin/python" -c "import deepspeed" 2>/dev/null && return 0
  log "installing deepspeed (CPU accelerator; torch stays pinned)"
  DS_BUILD_OPS=0 pipq "deepspeed==0.19.8" "torch==2.13.0"
}
