"""The clock check of issue 26's exact run: target alone, SpecDec++ with `recalibrate="auto"` and the cost-aware rule,
timed interleaved per prompt on the real pair, with per-prompt paired ratios.

    python benchmarks/stop_rules_clock.py OUT_DIR [--subset 4] [--max-new-tokens 96] [--dtype bfloat16]

The prompts are the first `--subset` of the exact run's sets (HumanEval 0-, MT-Bench 81-), so the timed runs can be
set beside the counts of `benchmarks/policy_curves.py` on the same prompts. Writes the benchmark tables
(`bench.runner.run_benchmark`: warm-up, interleaving, paired ratios with the first SpecDec++ configuration).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hf_specdecpp import SpecDecPPMethod
from hf_specdecpp.bench.configs import ASSISTED, TARGET_ALONE
from hf_specdecpp.bench.models import real_setup
from hf_specdecpp.bench.runner import run_benchmark


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--subset", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args(argv)
    setup = real_setup("both", args.subset, getattr(torch, args.dtype), None, None, None, False, False)
    configs = {"target": TARGET_ALONE, "hf-default": ASSISTED,
               "specdec++-auto": SpecDecPPMethod(head=setup.head, recalibrate="auto"),
               "cost-aware": SpecDecPPMethod(head=setup.head, stop_rule="cost-aware")}
    for name, prompts in setup.sets.items():
        run_benchmark(setup.target, setup.draft, setup.tokenizer, prompts, configs,
                               max_new_tokens=args.max_new_tokens, output_dir=Path(args.out_dir) / name,
                               paired_with="specdec++-auto",
                               progress=lambda p, c, r: print(f"{p} {c}: {r.time_s:.1f} s", flush=True))
        print((Path(args.out_dir) / name / "summary.md").read_text(), flush=True)


if __name__ == "__main__":
    main()
