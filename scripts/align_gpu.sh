#!/usr/bin/env bash
# GPU production alignment: accelerate + DeepSpeed ZeRO-3, vLLM generation (colocate or server).
#   MSPA_ALIGN_MODEL=/models/MiMo-VL-7B-RL scripts/align_gpu.sh configs/align/mimo_vl_7b_zero3.yaml
#   MSPA_ALIGN_MODEL=/models/Qwen2.5-VL-7B-Instruct \
#     scripts/align_gpu.sh configs/align/qwen25vl_7b_zero3_server.yaml
# Needs the gpu extra (pip install -e '.[gpu]': vLLM + DeepSpeed) and a local model folder.
#   MSPA_ALIGN_MODEL        local folder of the base model (overrides model.name)
#   MSPA_ACCELERATE_CONFIG  accelerate config (default configs/align/accelerate_zero3.yaml)
#   MSPA_VLLM_GPU           GPU that serves vLLM in server mode (default: the last one)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:?usage: scripts/align_gpu.sh CONFIG.yaml [extra mspa align options]}
shift
VENV=${MSPA_VENV:-.venv}
PY="$VENV/bin/python"
ACC_CFG=${MSPA_ACCELERATE_CONFIG:-configs/align/accelerate_zero3.yaml}

# Validate before anything starts: a typo must not cost a GPU node.
"$PY" -m mspa_features.cli align "$CONFIG" --check

# Read what the launch needs from the validated config.
read -r MODE NPROC PORT < <("$PY" - "$CONFIG" "${MSPA_ALIGN_MODEL:-}" <<'PYEOF'
import sys
from mspa_features.align.config import load_align_config
cfg = load_align_config(sys.argv[1])
print(cfg.grpo.vllm_mode if cfg.grpo.use_vllm else "none", cfg.grpo.num_processes,
      cfg.grpo.vllm_server_port)
PYEOF
)

# The model folder overrides the config's model.name through a derived config.
RUN_CONFIG=$CONFIG
if [[ -n ${MSPA_ALIGN_MODEL:-} ]]; then
  RUN_CONFIG=$(mktemp --suffix=.yaml -p "$(dirname "$CONFIG")" .align-XXXX)
  trap 'rm -f "$RUN_CONFIG"' EXIT
  "$PY" - "$CONFIG" "$MSPA_ALIGN_MODEL" "$RUN_CONFIG" <<'PYEOF'
import sys, yaml
raw = yaml.safe_load(open(sys.argv[1]))
raw["model"]["name"] = sys.argv[2]
yaml.safe_dump(raw, open(sys.argv[3], "w"), sort_keys=False)
PYEOF
fi

NGPU=$(nvidia-smi -L | wc -l)
if [[ $MODE == server ]]; then
  VLLM_GPU=${MSPA_VLLM_GPU:-$((NGPU - 1))}
  TRAIN_GPUS=$(seq -s, 0 $((NGPU - 1)) | tr ',' '\n' | grep -vx "$VLLM_GPU" | paste -sd,)
  MODEL=${MSPA_ALIGN_MODEL:?server mode needs MSPA_ALIGN_MODEL (the folder vLLM serves)}
  echo "[align] vLLM server on GPU $VLLM_GPU, training on GPUs $TRAIN_GPUS"
  CUDA_VISIBLE_DEVICES=$VLLM_GPU "$VENV/bin/trl" vllm-serve --model "$MODEL" --port "$PORT" &
  VLLM_PID=$!
  trap 'kill "$VLLM_PID" 2>/dev/null || true; rm -f "$RUN_CONFIG"' EXIT
  until curl -sf "http://127.0.0.1:$PORT/health/" >/dev/null; do
    kill -0 "$VLLM_PID" || { echo "[align] vLLM server exited" >&2; exit 1; }
    sleep 5
  done
  export CUDA_VISIBLE_DEVICES=$TRAIN_GPUS
fi

# Not exec: the EXIT trap must still stop the vLLM server and remove the derived config.
"$VENV/bin/accelerate" launch --config_file "$ACC_CFG" --num_processes "$NPROC" \
  -m mspa_features.cli align "$RUN_CONFIG" "$@"
