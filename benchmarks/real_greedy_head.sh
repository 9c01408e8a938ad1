#!/usr/bin/env bash
# Real run of the training pipeline on the Qwen2.5-Coder 0.5B -> 1.5B pair (greedy head), CPU, fp32.
set -euo pipefail
# Usage: bash benchmarks/real_greedy_head.sh [OUT_DIR]   (after `hf-specdecpp fetch-models`)
# Writes OUT_DIR/sharegpt_train.jsonl (ShareGPT first turns: never benchmark prompts), then data, head, calibration.
OUT=${1:-runs}; mkdir -p "$OUT/greedy"; cd "$OUT"
C=${HF_SPECDECPP_CACHE:-$HOME/.cache/hf_specdecpp}
D=$C/qwen2.5-coder-0.5b-instruct
T=$C/qwen2.5-coder-1.5b-instruct
python -c "
import json
from hf_specdecpp.benchmarks.prompts import sharegpt_prompts
with open('sharegpt_train.jsonl', 'w') as f:
    for p in sharegpt_prompts(limit=400, min_chars=24, max_chars=600):
        f.write(json.dumps({'prompt': p.text}) + '\\n')
"
start=$(date +%s)
hf-specdecpp make-data greedy/data --draft $D --target $T --prompts sharegpt_train.jsonl --chat \
  --max-prompts 64 --max-prompt-tokens 128 --max-new-tokens 128 --batch-size 16 --shard-size 32 --dev-fraction 0.25 --dtype float32
t1=$(date +%s); echo "make-data seconds: $((t1-start))"
hf-specdecpp train greedy/data greedy/head --epochs 6 --cpu
t2=$(date +%s); echo "train seconds: $((t2-t1))"
hf-specdecpp calibrate greedy/head greedy/data --max-candidates 12
t3=$(date +%s); echo "calibrate seconds: $((t3-t2))"
