#!/usr/bin/env bash
# A new user's first hour, timed: a fresh clone, a bare venv, the README's first command exactly as written (it
# fetches the real pair), then every example on the real pair. Writes a markdown table (seconds, peak resident
# memory of the step's processes) to WORKDIR/newcomer.md. Run it on a quiet machine (uptime near 0).
# examples/find_head.py needs a Hub (huggingface.co or HF_ENDPOINT): the test suite runs it against a local one.
#
#     bash benchmarks/newcomer_run.sh [REPO] [WORKDIR]
set -uo pipefail
REPO=${1:-$(git rev-parse --show-toplevel)}
WORK=${2:-$(mktemp -d)}
mkdir -p "$WORK"
OUT="$WORK/newcomer.md"
git clone -q "$REPO" "$WORK/clone" && cd "$WORK/clone" || exit 1
python3 -m venv "$WORK/venv" && source "$WORK/venv/bin/activate"
export HF_SPECDECPP_CACHE="$WORK/models"  # an empty model cache: the demo fetches the pair as a new user's does
{ echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit: $(git rev-parse --short HEAD)"; echo
  echo "| step | command | exit | seconds | peak MiB |"; echo "|---|---|---|---|---|"; } > "$OUT"

step() {  # step NAME COMMAND...
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" bash -c "$*" > "$WORK/$name.log" 2>&1
  local rc=$? seconds kib
  read -r seconds kib < <(tail -1 "$WORK/time")
  echo "| $name | \`$*\` | $rc | $seconds | $((kib / 1024)) |" >> "$OUT"
}

step readme-first-command 'pip install -e ".[fetch]" && python examples/demo.py'
cd examples
step chat 'python chat.py --turns "Write a function that adds two numbers." "Now add type hints." --max-new-tokens 64'
step sampling 'python sampling.py --samples 2 --max-new-tokens 64'
step trees 'python trees.py --max-new-tokens 64'
step batch 'python batch.py --max-new-tokens 64'
step custom-generate 'python custom_generate.py --max-new-tokens 64'
step hub-method 'python hub_method.py --max-new-tokens 64'
step train-head 'pip install -q -e "..[train]" && python train_head.py --workdir '"$WORK"'/head --local-dir '"$WORK"'/head/upload'
echo >> "$OUT"; echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); logs: $WORK/*.log" >> "$OUT"
cat "$OUT"
