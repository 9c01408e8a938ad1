"""Every drafting policy under several machines' cost curves, by exact replay on the real pair (issue 26).

    python benchmarks/policy_curves.py OUT_DIR [--subset 32] [--max-new-tokens 96] [--dtype bfloat16]
    python benchmarks/policy_curves.py OUT_DIR --summarise-only     # summary.txt and summary.md (the table) again
    python benchmarks/policy_curves.py OUT_DIR --subset 80 --greedy-from docs/benchmarks/cpu-exact-bf16-full-2026-11-27

Greedy decoding. Per prompt (HumanEval 0-79 and MT-Bench first turns, the first `--subset` of each) the trace is
recorded once (`bench.exact`) and every policy replayed on it: the counts of a policy that ignores costs are the
same under every curve; the cost-aware rule (`core.cost_aware`) reads the curve, so it is replayed once per curve
(except with the assumed costs, "-assumed"), and its rounds with the shipped costs (this machine's curve) are also
costed under the other curves: what `stop_rule="cost-aware"` gives there without `recalibrate="auto"`.
The candidate lengths of every round are saved per prompt (`rounds.jsonl`, resumable), and a round with K
candidates costs `K * c + v(K)` target steps under a curve. Curves: this machine's (AMD EPYC bf16, measured quiet
on 2026-11-27), the Intel AMX bf16 CPU's (measured elsewhere, `benchmarks/curves/`), and two GPU-like curves that
are ASSUMPTIONS (c = 0.25 and 0.1, v(K) = 1 + 0.01 K up to K = 32). Speed-up = the target alone's steps (one per
token) over the policy's, summed over the set's prompts.

`--greedy-from DIR` takes each prompt's target greedy output from an earlier exact run's `*/exact.json.gz`
(`prompt_info[prompt]["target_tokens"]`, used only where that run's prompt length equals this one's) instead of
generating it again: the policies are then compared on that recorded output (a row says `cached_greedy`).
"""

from __future__ import annotations

import argparse
import gzip
from dataclasses import replace
import json
import math
import sys
import time
from pathlib import Path

import torch

from hf_specdecpp.bench.configs import ASSISTED, HEURISTIC, TARGET_ALONE, build_configs
from hf_specdecpp.bench.exact import policies as P
from hf_specdecpp.bench.exact.configs import policy_for
from hf_specdecpp.bench.exact.recorder import record_trace
from hf_specdecpp.bench.exact.replay import replay
from hf_specdecpp.bench.models import real_setup
from hf_specdecpp.bench.paired import log_ratio_interval
from hf_specdecpp.bench.runner import generation_kwargs, prompt_items
from hf_specdecpp.core.cost_aware import ASSUMED_COST_RATIO, OnlineSettings, assumed_verify_costs, fixed_k_rate
from hf_specdecpp.core.costs import CostCurve
from hf_specdecpp.methods.specdecpp.calibration import policy_from_costs
from hf_specdecpp.methods.specdecpp.estimator import head_calibration
from hf_specdecpp.methods.specdecpp.generator import expected_rate

HERE = Path(__file__).resolve().parent
CAP = 20


def curves() -> dict[str, CostCurve]:
    """name -> cost curve (seconds scaled so that the target step is 1 for the assumed ones)."""
    measured = {name: CostCurve.from_dict(json.loads((HERE / "curves" / f"{name}.json").read_text()))
                for name in ("amd-epyc-bf16", "intel-amx-bf16")}
    assumed = {f"gpu-like-c{c:g} (assumed)": CostCurve(c, 1.0, {k: 1.0 + 0.01 * k for k in (0, 1, 2, 4, 8, 16, 32)})
               for c in (0.25, 0.1)}
    return measured | assumed


def fixed_policies(target, draft, head) -> dict[str, P.Policy]:
    """The policies whose counts do not depend on the costs (the cost-aware rules with the assumed costs among them:
    "-assumed", what `EntropyMethod(estimator="top1", stop_rule="cost-aware")` does when no costs are given)."""
    configs = build_configs(range(1, 9), (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6), (0.1, 0.2, 0.3, 0.4, 0.5),
                            head=None, max_candidates=CAP, svip_hs=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6))
    out = {name: policy_for(config, target, draft) for name, config in configs.items()
           if config not in (TARGET_ALONE,)}
    for h in (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6):
        out[f"specdec++-h{h:g}"] = P.SpecDecPP(head, h, 1, CAP)
    out["oracle"] = P.Oracle(CAP)
    assumed = (ASSUMED_COST_RATIO, assumed_verify_costs(CAP))
    prior = OnlineSettings(prior_rate=fixed_k_rate(*assumed, CAP))
    scale, bias = head_calibration(head)
    out["cost-aware-head-assumed"] = P.CostAware(head, *assumed, CAP, 1, replace(prior, prior_scale=scale,
                                                                                 prior_bias=bias))
    out["cost-aware-top1-assumed"] = P.CostAware(None, *assumed, CAP, 1, prior)
    return out


def cost_policies(head, curve: CostCurve) -> dict[str, P.Policy]:
    """The policies that read the curve: SpecDec++ as a user with `recalibrate="auto"` gets it on that machine
    (the threshold and cap re-simulated for the curve, `policy_from_costs`), the cost-aware rule with the head
    (its prior rate the re-simulated policy's speed-up and its calibration the head's dev fit, as `SpecDecPPMethod`
    does) or the draft's top-1 probability (prior rate likewise), and `EntropyMethod(estimator="top1",
    stop_rule="cost-aware")` given the curve's costs ("-given": prior rate `fixed_k_rate`)."""
    auto = policy_from_costs(head, curve, max_candidates=CAP)
    table = tuple(float(v) for v in curve.table(CAP + 1))
    scale, bias = head_calibration(head)
    settings = OnlineSettings(prior_rate=expected_rate(auto), prior_scale=scale, prior_bias=bias)
    return {"specdec++-auto": P.SpecDecPP(head, auto.threshold, 1, auto.max_candidates),
            "cost-aware-head": P.CostAware(head, curve.c_draft, table, CAP, 1, settings),
            "cost-aware-top1": P.CostAware(None, curve.c_draft, table, CAP, 1,
                                           OnlineSettings(prior_rate=expected_rate(auto))),
            "cost-aware-top1-given": P.CostAware(None, curve.c_draft, table, CAP, 1,
                                                 OnlineSettings(prior_rate=fixed_k_rate(curve.c_draft, table, CAP)))}


def cached_greedy(folder: str | None) -> dict[str, dict]:
    """prompt id -> {"target_tokens", "prompt_length"} from an earlier exact run's `*/exact.json.gz` files."""
    if folder is None:
        return {}
    found = {}
    for path in sorted(Path(folder).glob("*/exact.json.gz")):
        with gzip.open(path, "rt") as f:
            found.update(json.load(f)["prompt_info"])
    if not found:
        raise SystemExit(f"--greedy-from {folder}: no */exact.json.gz with prompt_info found there")
    return found


def record(args) -> None:
    setup = real_setup("both", args.subset, getattr(torch, args.dtype), None, None, None, False, False)
    target, draft, tok, head = setup.target, setup.draft, setup.tokenizer, setup.head
    gen_kwargs = generation_kwargs(tok, False, 0.7)
    fixed = fixed_policies(target, draft, head)
    per_curve = {name: cost_policies(head, curve) for name, curve in curves().items()}
    out_file = Path(args.out_dir) / "rounds.jsonl"
    done = {json.loads(line)["prompt"] for line in out_file.read_text().splitlines()} if out_file.exists() else set()
    cache = cached_greedy(args.greedy_from)
    for dataset, prompts in setup.sets.items():
        for prompt_id, text in prompt_items(prompts):
            if prompt_id in done:
                continue
            clock = time.perf_counter()
            enc = tok(text, return_tensors="pt", add_special_tokens=False)
            inputs = {k: enc[k] for k in ("input_ids", "attention_mask")}
            known = cache.get(prompt_id, {})
            reuse = known.get("prompt_length") == inputs["input_ids"].shape[1] and "target_tokens" in known
            trace = record_trace(target, draft, prompt_id, inputs, args.max_new_tokens, gen_kwargs,
                                 target_tokens=list(known["target_tokens"]) if reuse else None)
            rounds = {name: replay(trace, policy).candidate_lengths for name, policy in fixed.items()}
            for curve_name, policies in per_curve.items():
                rounds.update({f"{name}@{curve_name}": replay(trace, p).candidate_lengths
                               for name, p in policies.items()})
            seconds = {k: round(v, 1) for k, v in trace.seconds.items()}
            seconds["branch_steps"] = round(trace.recorder.seconds, 1) if trace.recorder is not None else 0.0
            seconds["total"] = round(time.perf_counter() - clock, 1)
            row = {"prompt": prompt_id, "dataset": dataset, "new_tokens": trace.new_tokens, "rounds": rounds,
                   "seconds": seconds, "branch_steps": trace.branch_steps(), "cached_greedy": reuse}
            trace.release()
            with open(out_file, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{prompt_id}: {trace.new_tokens} tokens, {row['branch_steps']} branch steps, {seconds}", flush=True)


def units(lengths: list[int], curve: CostCurve) -> float:
    table = curve.table(max(lengths + [1]))
    return sum(k * curve.c_draft + float(table[k]) for k in lengths)


def read_rows(out_dir: Path) -> list[dict]:
    """The recorded prompts of `out_dir/rounds.jsonl`: every policy's candidate counts per round."""
    return [json.loads(line) for line in (out_dir / "rounds.jsonl").read_text().splitlines()]


SHIPPED_COSTS = "amd-epyc-bf16"
"""The curve the shipped heads' policies were measured on: the costs SpecDec++'s cost-aware rule reads on any machine
unless `recalibrate="auto"` re-times there."""
SHIPPED_COST_AWARE = "cost-aware-head (shipped costs)"
"""`SpecDecPPMethod(head=load_shipped_head(), stop_rule="cost-aware", estimator="head")`, on any machine."""
SHIPPED_DEFAULT = "specdec++ default (shipped costs)"
"""`SpecDecPPMethod(head=load_shipped_head())` with no other argument, on any machine: the cost-aware rule on the
draft's top-1 probability (what `choose_estimator` picks for the shipped heads) with the shipped policy's costs and
prior rate, i.e. the rounds of "cost-aware-top1" under the shipped costs (the replay of the real default,
`bench.exact.configs.policy_for`, gave identical rounds on all 32 prompts it was compared on)."""
SHIPPED_COST_ROUNDS = {SHIPPED_COST_AWARE: "cost-aware-head", SHIPPED_DEFAULT: "cost-aware-top1"}
"""Columns that take another policy's rounds under the shipped costs, whatever the curve they are costed under."""


def summarise(rows: list[dict]) -> str:
    lines = []
    for curve_name, curve in curves().items():
        for dataset in sorted({r["dataset"] for r in rows}):
            subset = [r for r in rows if r["dataset"] == dataset]
            lines += cell(curve_name, curve, dataset, subset)
    return "\n".join(lines)


def rounds_of(row: dict, name: str, curve_name: str) -> list[int]:
    """A policy's candidate counts on `row` when costed under `curve_name` (`SHIPPED_COST_ROUNDS`: with the shipped
    costs whatever the curve)."""
    if name in SHIPPED_COST_ROUNDS:
        return row["rounds"][f"{SHIPPED_COST_ROUNDS[name]}@{SHIPPED_COSTS}"]
    return row["rounds"].get(f"{name}@{curve_name}", row["rounds"].get(name))


def speedups(curve_name: str, curve: CostCurve, rows: list[dict]) -> dict[str, float]:
    tokens = sum(r["new_tokens"] for r in rows)
    names = [n.split("@")[0] for n in rows[0]["rounds"] if "@" not in n or n.endswith("@" + curve_name)]
    return {n: tokens / sum(units(rounds_of(r, n, curve_name), curve) for r in rows) for n in names + list(SHIPPED_COST_ROUNDS)}


def best(s: dict[str, float], *prefixes: str) -> tuple[str, float]:
    """The hindsight-best policy of a family (names starting with any of `prefixes`) and its speed-up."""
    name = max((n for n in s if n.startswith(prefixes)), key=s.get)
    return name, s[name]


def cell_entries(s: dict[str, float]) -> list[tuple[str, float]]:
    """(policy, speed-up) of one cell in the reported order, those the run recorded; "best" entries take the
    hindsight-best parameter (entropy and SVIP are one family: both stop on the draft's entropy)."""
    entries = [("oracle", s["oracle"]), ("hf-default", s["hf-default"]), ("hf-heuristic", s["hf-heuristic"]),
               best(s, "fixed-K"), best(s, "entropy-", "svip-"), ("svip-h0.3", s["svip-h0.3"]),
               ("specdec++-h0.25", s["specdec++-h0.25"]), best(s, "specdec++-h"), ("specdec++-auto", s["specdec++-auto"]),
               (SHIPPED_DEFAULT, s[SHIPPED_DEFAULT])]
    return entries + [(n, s[n]) for n in (SHIPPED_COST_AWARE, "cost-aware-head", "cost-aware-top1", "cost-aware-top1-given",
                                          "cost-aware-top1-assumed", "cost-aware-head-assumed") if n in s]


PAIRS = ((SHIPPED_DEFAULT, "specdec++-h0.25"), (SHIPPED_DEFAULT, "specdec++-auto"), (SHIPPED_DEFAULT, SHIPPED_COST_AWARE),
         ("cost-aware-top1-assumed", "svip-h0.3"), ("cost-aware-top1-given", "specdec++-auto"))
"""(rule, reference) pairs whose per-prompt time ratios the summary reports with intervals."""


def cell(curve_name: str, curve: CostCurve, dataset: str, rows: list[dict]) -> list[str]:
    s = speedups(curve_name, curve, rows)
    entries = cell_entries(s)
    oracle = entries[0][1]
    body = ", ".join(f"{n} {v:.3f}x ({v / oracle:.0%})" for n, v in entries)
    pairs = [(a, b) for a, b in PAIRS + ((SHIPPED_DEFAULT, entries[4][0]),) if a in s and b in s]
    return [f"{curve_name} | {dataset} ({len(rows)} prompts, c={curve.c_draft:.2f}): {body}",
            "    paired, time of the reference / time of the rule (> 1: the rule faster): "
            + "; ".join(paired(curve_name, curve, rows, a, b) for a, b in pairs)]


TABLE_COLUMNS = (("oracle", "oracle"), ("hf default", "hf-default"), ("best entropy / SVIP", None),
                 ("SVIP h 0.3", "svip-h0.3"),
                 ("**SpecDec++ default** (cost-aware, draft top-1 chosen by the head's dev traces, shipped costs)",
                  SHIPPED_DEFAULT),
                 ("threshold as shipped (h 0.25; the default before 2026-12-07)", "specdec++-h0.25"),
                 ("threshold re-calibrated (auto)", "specdec++-auto"),
                 ("cost-aware head, shipped costs", SHIPPED_COST_AWARE),
                 ("cost-aware head, re-calibrated costs", "cost-aware-head"),
                 ("**no-head default** (cost-aware top-1, assumed costs)", "cost-aware-top1-assumed"),
                 ("cost-aware top-1, measured costs", "cost-aware-top1-given"))


def markdown_table(rows: list[dict]) -> str:
    """The cells as one markdown table (the README's): speed-up (% of the oracle) per curve and prompt set."""
    columns = [(title, key) for title, key in TABLE_COLUMNS if key is None or key in rows[0]["rounds"]
               or f"{key}@{SHIPPED_COSTS}" in rows[0]["rounds"] or key in SHIPPED_COST_ROUNDS]
    lines = ["| curve | set (prompts) | " + " | ".join(t for t, _ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for curve_name, curve in curves().items():
        for dataset in sorted({r["dataset"] for r in rows}):
            subset = [r for r in rows if r["dataset"] == dataset]
            s = speedups(curve_name, curve, subset)
            family, best_tf = best(s, "entropy-", "svip-")
            cells = []
            for _, key in columns:
                if key is None:
                    cells.append(f"{best_tf:.3f} ({family})")
                else:
                    cells.append(f"{s[key]:.3f}" if key == "oracle" else f"{s[key]:.3f} ({s[key] / s['oracle']:.0%})")
            lines.append(f"| {curve_name} | {dataset} ({len(subset)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired(curve_name: str, curve: CostCurve, rows: list[dict], name: str, reference: str) -> str:
    """Time of `reference` / time of `name`, geometric mean of the per-prompt ratios with a 95% t-interval."""
    logs = [math.log(units(rounds_of(r, reference, curve_name), curve) / units(rounds_of(r, name, curve_name), curve))
            for r in rows]
    i = log_ratio_interval(logs)
    return (f"{name} vs {reference} {i['ratio']:.3f} [{i['ci_low']:.3f}, {i['ci_high']:.3f}] (faster on "
            f"{i['wins']}/{i['prompts']})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--subset", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--greedy-from", default=None,
                        help="an earlier exact run's folder whose recorded target greedy outputs are re-used")
    args = parser.parse_args(argv)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    if not args.summarise_only:
        record(args)
    rows = read_rows(Path(args.out_dir))
    text = summarise(rows)
    (Path(args.out_dir) / "summary.txt").write_text(text + "\n")
    (Path(args.out_dir) / "summary.md").write_text(markdown_table(rows))
    print(text)


if __name__ == "__main__":
    sys.exit(main())
