"""The issue-26 policies at T = 0.7 on the real pair: sampled counts of real calls, costed under cost curves.

    python benchmarks/policy_sampling.py OUT_DIR [--subset 5] [--seeds 0,1] [--max-new-tokens 96]
    python benchmarks/policy_sampling.py OUT_DIR --summarise-only

Sampled counts are random, so nothing is replayed: every configuration is called for real once per seed (the RNG
seeded before each call, `bench.exact.prompt.sampled_prompt`) on the first `--subset` HumanEval tasks (0-79) and
MT-Bench first turns, and its candidates per round are saved (`calls.jsonl`, resumable per prompt and
configuration: a configuration added later runs on the prompts done before). A round
with K candidates costs `K * c + v(K)` target steps under a curve (`policy_curves.curves`). Configurations that
do not read costs are costed under every curve. The cost-aware rules read costs, so they are run once per
costing they stand for: SpecDec++'s cost-aware rules (its default, which reads the estimate `choose_estimator` picks,
and the same rule on the head's predictions) read the head's policy (measured on this kind of machine), the
training-free rule (`EntropyMethod(estimator="top1", stop_rule="cost-aware")`) runs with this
machine's curve, with the GPU-like c = 0.25 curve (an ASSUMPTION) and with no costs given (the assumed ones);
a run's name ends in `@<curve>` when it belongs to that curve only. The head is the shipped T = 0.7 one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from hf_specdecpp.bench.configs import ASSISTED
from hf_specdecpp.bench.exact.prompt import sampled_prompt
from hf_specdecpp.bench.models import real_setup
from hf_specdecpp.bench.paired import log_ratio_interval
from hf_specdecpp.bench.runner import generation_kwargs, prompt_items
from hf_specdecpp.methods import registry

from policy_curves import CAP, curves, units

HERE_CURVE, GPU_CURVE = "amd-epyc-bf16", "gpu-like-c0.25 (assumed)"
SVIP_HS = (0.2, 0.3, 0.4)
USERS_GET = "specdec++ default (cost-aware, estimator auto)"
THRESHOLD = "specdec++ threshold (shipped h)"
COST_AWARE = "specdec++ cost-aware, head"


def configs(head) -> dict:
    """name -> configuration (see the module docstring)."""
    out = {"hf-default": ASSISTED}
    out.update({f"svip-h{h:g}": registry.build("entropy", lam=h, estimator="svip", max_candidates=CAP)
                for h in SVIP_HS})
    out[USERS_GET] = registry.build("specdec++", head=head)
    out[THRESHOLD] = registry.build("specdec++", head=head, stop_rule="threshold")
    out[COST_AWARE] = registry.build("specdec++", head=head, stop_rule="cost-aware", estimator="head")
    top1 = dict(estimator="top1", stop_rule="cost-aware", max_candidates=CAP)
    out["cost-aware top-1 (assumed costs)"] = registry.build("entropy", **top1)
    for name in (HERE_CURVE, GPU_CURVE):
        curve = curves()[name]
        out[f"cost-aware top-1@{name}"] = registry.build("entropy", cost_ratio=curve.c_draft,
                                                         verify_costs=tuple(float(v) for v in curve.table(CAP)),
                                                         **top1)
    return out


def record(args) -> None:
    setup = real_setup("both", args.subset, getattr(torch, args.dtype), None, None, None, True, False)
    gen_kwargs = generation_kwargs(setup.tokenizer, True, args.temperature)
    runs = configs(setup.head)
    out_file = Path(args.out_dir) / "calls.jsonl"
    lines = out_file.read_text().splitlines() if out_file.exists() else []
    done = {(c["prompt"], c["config"]) for c in map(json.loads, lines)}
    for dataset, prompts in setup.sets.items():
        for prompt_id, text in prompt_items(prompts):
            missing = {name: run for name, run in runs.items() if (prompt_id, name) not in done}
            if not missing:
                continue
            enc = setup.tokenizer(text, return_tensors="pt", add_special_tokens=False)
            inputs = {k: enc[k] for k in ("input_ids", "attention_mask")}
            records, info = sampled_prompt(setup.target, setup.draft, prompt_id, inputs, missing, args.max_new_tokens,
                                           gen_kwargs, args.seeds)
            with open(out_file, "a") as f:
                for r in records:
                    f.write(json.dumps({"prompt": prompt_id, "dataset": dataset, "seed": r.seed, "config": r.config,
                                        "new_tokens": r.new_tokens, "candidate_lengths": r.candidate_lengths,
                                        "accepted_lengths": r.accepted_lengths}) + "\n")
            print(f"{prompt_id}: {len(records)} calls in {info['counted_s']:.0f} s", flush=True)


def summarise(calls: list[dict]) -> str:
    """Per curve and prompt set: speed-up over the target alone of every configuration (summed over prompts and
    seeds), and per-call paired time ratios against SpecDec++ as shipped and against the best SVIP."""
    lines = []
    for curve_name in (HERE_CURVE, GPU_CURVE):
        curve = curves()[curve_name]
        for dataset in sorted({c["dataset"] for c in calls}):
            cell = [c for c in calls if c["dataset"] == dataset]
            names = [n for n in dict.fromkeys(c["config"] for c in cell)
                     if "@" not in n or n.endswith("@" + curve_name)]
            speed = {n: speedup([c for c in cell if c["config"] == n], curve) for n in names}
            svip = max((n for n in names if n.startswith("svip-")), key=speed.get)
            lines.append(f"{curve_name} | {dataset} ({len({c['prompt'] for c in cell})} prompts x "
                         f"{len({c['seed'] for c in cell})} seeds): "
                         + ", ".join(f"{n.split('@')[0]} {v:.3f}x" for n, v in speed.items()))
            for reference in (THRESHOLD, svip):
                lines.append(f"    paired, time of {reference} / time of the rule: " + ", ".join(
                    paired(cell, curve, reference, n) for n in names if n.split("@")[0].startswith("cost-aware")
                    or n in (COST_AWARE, USERS_GET)))
    return "\n".join(lines)


def speedup(calls: list[dict], curve) -> float:
    return sum(c["new_tokens"] for c in calls) / sum(units(c["candidate_lengths"], curve) for c in calls)


def paired(cell: list[dict], curve, reference: str, name: str) -> str:
    """Geometric mean of the per-(prompt, seed) time-per-token ratios with a 95% t-interval."""
    by = {(c["prompt"], c["seed"], c["config"]): c for c in cell}
    keys = sorted({(c["prompt"], c["seed"]) for c in cell})
    per_token = lambda c: units(c["candidate_lengths"], curve) / max(c["new_tokens"], 1)
    logs = [math.log(per_token(by[k + (reference,)]) / per_token(by[k + (name,)])) for k in keys
            if k + (reference,) in by and k + (name,) in by]
    i = log_ratio_interval(logs)
    return f"{name.split('@')[0]} {i['ratio']:.3f} [{i['ci_low']:.3f}, {i['ci_high']:.3f}]"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--subset", type=int, default=5)
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1])
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--summarise-only", action="store_true")
    args = parser.parse_args(argv)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    if not args.summarise_only:
        record(args)
    calls = [json.loads(line) for line in (Path(args.out_dir) / "calls.jsonl").read_text().splitlines()]
    text = summarise(calls)
    (Path(args.out_dir) / "summary.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
