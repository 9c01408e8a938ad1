"""The clock check of issue 26's exact run: target alone, transformers' default and heuristic schedule, SpecDec++ as users get it (the
cost-aware rule on the estimate its head's dev traces choose, the shipped policy's costs) and with the threshold rule
(the shipped h), the no-head default (the cost-aware rule on the draft's top-1 probability, assumed costs) and SVIP at
h 0.3, timed interleaved per prompt on the real pair, with per-prompt paired ratios against SpecDec++'s default.

    python benchmarks/stop_rules_clock.py OUT_DIR [--subset 4] [--max-new-tokens 96] [--dtype bfloat16]
    python benchmarks/stop_rules_clock.py OUT_DIR --compare-only --exact RUN_DIR   # the check table again

The prompts are the first `--subset` of the exact run's sets (HumanEval 0-, MT-Bench 81-), so the timed runs can be
set beside the counts of `benchmarks/policy_curves.py` on the same prompts. Writes the benchmark tables
(`bench.runner.run_benchmark`: warm-up, interleaving, paired ratios with `REFERENCE`). With `--exact RUN_DIR`
(a `policy_curves.py` output folder) it also writes `check.md`: each paired clock ratio next to the exact mode's
prediction for the same prompts under this machine's cost curve (decode only: the prefill, the same work for every
configuration, is left out of the counts).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import torch

from hf_specdecpp import EntropyMethod, SpecDecPPMethod
from hf_specdecpp.bench.configs import ASSISTED, HEURISTIC, TARGET_ALONE
from hf_specdecpp.bench.models import real_setup
from hf_specdecpp.bench.runner import run_benchmark

from policy_curves import SHIPPED_COSTS, SHIPPED_DEFAULT, curves, read_rows, rounds_of, units

REFERENCE = "specdec++-default"
EXACT_NAMES = {"target": None, "hf-default": "hf-default", "hf-heuristic": "hf-heuristic",
               "specdec++-default": SHIPPED_DEFAULT, "specdec++-threshold": "specdec++-h0.25",
               "no-head-default": "cost-aware-top1-assumed", "svip-h0.3": "svip-h0.3"}
"""Clock configuration -> its policy in `policy_curves.py`'s rounds (`rounds_of` under this machine's curve; None:
the target alone, one step per token)."""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--subset", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--exact", default=None, help="a policy_curves.py output folder to check the clock against")
    parser.add_argument("--compare-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.compare_only:
        time_configs(args)
    if args.exact:
        table = check_table(Path(args.out_dir), Path(args.exact))
        (Path(args.out_dir) / "check.md").write_text(table)
        print(table)


def time_configs(args) -> None:
    setup = real_setup("both", args.subset, getattr(torch, args.dtype), None, None, None, False, False)
    configs = {"target": TARGET_ALONE, "hf-default": ASSISTED, "hf-heuristic": HEURISTIC,
               "specdec++-default": SpecDecPPMethod(head=setup.head),
               "specdec++-threshold": SpecDecPPMethod(head=setup.head, stop_rule="threshold"),
               "no-head-default": EntropyMethod(estimator="top1", stop_rule="cost-aware"),
               "svip-h0.3": EntropyMethod(lam=0.3, estimator="svip")}
    for name, prompts in setup.sets.items():
        run_benchmark(setup.target, setup.draft, setup.tokenizer, prompts, configs,
                               max_new_tokens=args.max_new_tokens, output_dir=Path(args.out_dir) / name,
                               paired_with=REFERENCE,
                               progress=lambda p, c, r: print(f"{p} {c}: {r.time_s:.1f} s", flush=True))
        print((Path(args.out_dir) / name / "summary.md").read_text(), flush=True)


def check_table(out_dir: Path, exact_dir: Path) -> str:
    """Each paired clock ratio (`*/paired.csv`) beside the exact mode's geometric mean over the same prompts."""
    rows = {r["prompt"]: r for r in read_rows(exact_dir)}
    curve = curves()[SHIPPED_COSTS]
    lines = [f"| set | configuration | clock: time / time of {REFERENCE} | exact mode |", "|---|---|---|---|"]
    for paired_csv in sorted(out_dir.glob("*/paired.csv")):
        with open(paired_csv.parent / "results.csv") as f:
            prompts = sorted({r["prompt_id"] for r in csv.DictReader(f)})
        with open(paired_csv) as f:
            for p in csv.DictReader(f):
                cost = lambda name, r: (r["new_tokens"] if EXACT_NAMES[name] is None
                                        else units(rounds_of(r, EXACT_NAMES[name], SHIPPED_COSTS), curve))
                logs = [math.log(cost(p["config"], rows[q]) / cost(p["reference"], rows[q])) for q in prompts]
                lines.append(f"| {paired_csv.parent.name} ({len(prompts)}) | {p['config']} | {float(p['ratio']):.3f} "
                             f"[{float(p['ci_low']):.3f}, {float(p['ci_high']):.3f}] | "
                             f"{math.exp(sum(logs) / len(logs)):.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
