#!/usr/bin/env bash
# The shipped heads for the Qwen2.5-Coder 0.5B -> 1.5B pair (v0.2): ShareGPT prompts only (never benchmark prompts).
#   bash benchmarks/real_heads.sh [OUT_DIR] [DTYPE]      (after `hf-specdecpp fetch-models`; resumable: rerun it)
# Training data: 1,200 ShareGPT first turns with their ShareGPT answers (`--responses dataset`: one forward pass of
# each model per prompt). Calibration data: 128 other ShareGPT prompts answered by the target itself (the served
# distribution), greedy and T = 0.7; its dev half gives the thresholds, the caps and the traces shipped with the heads.
set -euo pipefail
OUT=${1:-runs}; DTYPE=${2:-bfloat16}; mkdir -p "$OUT"; cd "$OUT"
C=${HF_SPECDECPP_CACHE:-$HOME/.cache/hf_specdecpp}
D=$C/qwen2.5-coder-0.5b-instruct
T=$C/qwen2.5-coder-1.5b-instruct
[ -f sharegpt.jsonl ] || python - <<'PY'
import json
from hf_specdecpp.assets.prompts import sharegpt_prompts
prompts = [p for p in sharegpt_prompts(min_chars=24, max_chars=1500) if p.reference and len(p.reference) >= 200]
with open("sharegpt.jsonl.tmp", "w") as train, open("sharegpt_served.jsonl", "w") as served:
    for i, p in enumerate(prompts[:1328]):
        if i < 1200:
            train.write(json.dumps({"id": p.id, "prompt": p.text, "response": p.reference}) + "\n")
        else:
            served.write(json.dumps({"id": p.id, "prompt": p.text}) + "\n")
import os; os.replace("sharegpt.jsonl.tmp", "sharegpt.jsonl")
PY
run() { local start=$(date +%s); "$@"; echo "$(date -u +%FT%TZ) $1 $2 $3: $(( $(date +%s) - start )) s" >> timings.log; }
COMMON="--draft $D --target $T --chat --max-prompt-tokens 256 --dtype $DTYPE --head-inputs producing_state"
run hf-specdecpp make-data data-train $COMMON --prompts sharegpt.jsonl --responses dataset --max-new-tokens 160 \
  --batch-size 8 --shard-size 64 --dev-fraction 0.1
for run in "greedy 0.0" "t0.7 0.7"; do
  set -- $run
  run hf-specdecpp make-data "served-$1" $COMMON --prompts sharegpt_served.jsonl --temperature "$2" \
    --max-new-tokens 128 --batch-size 16 --shard-size 32 --dev-fraction 0.5
done
run hf-specdecpp make-data data-train-t0.7 $COMMON --prompts sharegpt.jsonl --responses dataset --max-new-tokens 160 \
  --batch-size 8 --shard-size 64 --dev-fraction 0.1 --temperature 0.7
