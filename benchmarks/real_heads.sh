#!/usr/bin/env bash
# The shipped heads for the Qwen2.5-Coder 0.5B -> 1.5B pair: training data, training and calibration on CPU, fp32.
set -euo pipefail
# Usage: bash benchmarks/real_heads.sh [OUT_DIR]   (after `hf-specdecpp fetch-models`)
# Writes OUT_DIR/sharegpt_train.jsonl (ShareGPT first turns: never benchmark prompts), then for greedy decoding and
# for sampling at temperature 0.7: data, a producing-state head with confidence features, and its calibration.
OUT=${1:-runs}; mkdir -p "$OUT"; cd "$OUT"
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
COMMON="--draft $D --target $T --prompts sharegpt_train.jsonl --chat --max-prompt-tokens 128 --max-new-tokens 128 \
  --batch-size 16 --shard-size 32 --dev-fraction 0.25 --dtype float32"
TRAIN="--input-state producing_state --confidence-features --num-layers 1 --epochs 20 --batch-size 2 --lr 1e-5 \
  --feature-lr 1e-2 --cpu"
for run in "greedy 0.0 96" "t0.7 0.7 32"; do
  set -- $run
  start=$(date +%s)
  hf-specdecpp make-data "$1-data" $COMMON --max-prompts "$3" --temperature "$2"
  t1=$(date +%s); echo "$1 make-data seconds: $((t1-start))"
  hf-specdecpp train "$1-data" "$1-head" $TRAIN
  t2=$(date +%s); echo "$1 train seconds: $((t2-t1))"
  # costs are timed once, for the greedy head; the T=0.7 head reuses them (same pair, same machine)
  if [ "$1" = greedy ]; then COSTS="--repeats 8"; else COSTS="--costs-from greedy-head"; fi
  hf-specdecpp calibrate "$1-head" "$1-data" --max-candidates 16 $COSTS
  t3=$(date +%s); echo "$1 calibrate seconds: $((t3-t2))"
done
