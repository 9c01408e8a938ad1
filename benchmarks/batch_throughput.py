"""Batch throughput of the real pair (issue 18): tokens/s over the whole batch at batch sizes 1, 2, 4, 8 for the
target alone (transformers' batched greedy generate), fixed K, the entropy stopper and SpecDec++, interleaved per
batch size in one run, with forward counts (`hf_specdecpp.bench.throughput`).

    python benchmarks/batch_throughput.py --out DIR [--batch-sizes 1,2,4,8] [--repeats 3] [--max-new-tokens 64]
        [--dtype bfloat16] [--tiny]

Prompts: HumanEval tasks 0-3 and MT-Bench questions 81-84 alternating (batch b takes the first b), chat template
applied. Writes DIR/throughput.json and DIR/throughput.md. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from hf_specdecpp import EntropyMethod, FixedKMethod, SpecDecPPMethod
from hf_specdecpp.bench.machine import machine_info, machine_line
from hf_specdecpp.bench.throughput import batch_throughput, runs_to_json, throughput_markdown, throughput_table
from hf_specdecpp.utils.io import write_json


def setup(args):
    """(target, draft, tokenizer, head, prompts): the real pair or the tiny stand-ins."""
    if args.tiny:
        from hf_specdecpp.testing import tiny_head, tiny_pair, tiny_prompts, tiny_tokenizer

        target, draft = tiny_pair(noise=0.05)
        return target, draft, tiny_tokenizer(), tiny_head(), [p["prompt"] for p in tiny_prompts(8)]
    from hf_specdecpp import load_shipped_head
    from hf_specdecpp.assets import load_pair
    from hf_specdecpp.bench.models import real_prompts

    target, draft, tokenizer = load_pair(dtype=getattr(torch, args.dtype), device=args.device)
    sets = real_prompts("both", 4, tokenizer)
    prompts = [p.text for pair in zip(sets["humaneval"], sets["mtbench"]) for p in pair]
    return target, draft, tokenizer, load_shipped_head(), prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-sizes", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--fixed-k", type=int, default=4)
    parser.add_argument("--entropy-lam", type=float, default=0.3)
    parser.add_argument("--max-candidates", type=int, default=None,
                        help="SpecDec++ cap (default: the head's policy, re-calibrated here when the head has traces)")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (a smoke run)")
    args = parser.parse_args()
    target, draft, tokenizer, head, prompts = setup(args)
    configs = {f"fixed-K{args.fixed_k}": FixedKMethod(num_candidates=args.fixed_k),
               f"entropy-{args.entropy_lam:g}": EntropyMethod(lam=args.entropy_lam),
               "specdec++": SpecDecPPMethod(head=head, max_candidates=args.max_candidates,
                                                        recalibrate="auto" if head.traces else "never")}
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    runs = batch_throughput(target, draft, tokenizer, prompts, configs, sizes, args.repeats, args.max_new_tokens,
                            progress=lambda r: print(f"B={r.batch_size} {r.config}: {r.new_tokens} tokens in "
                                                     f"{r.seconds:.2f}s", file=sys.stderr, flush=True))
    rows = throughput_table(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = machine_info(target)
    write_json(args.out / "throughput.json", {"machine": machine, "args": vars(args) | {"out": str(args.out)},
                                              "runs": runs_to_json(runs), "table": rows})
    (args.out / "throughput.md").write_text(throughput_markdown(rows, machine_line(machine)))
    print((args.out / "throughput.md").read_text())


if __name__ == "__main__":
    main()
