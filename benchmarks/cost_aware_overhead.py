"""Host time of the stop rules' own work per drafted token, without the models (issue 26's overhead target: the
online adaptation under 2% of a draft step per drafted token).

    python benchmarks/cost_aware_overhead.py [--rounds 40] [--steps 6] [--repeats 5]

The cost-aware rule (`core.cost_aware.CostAwareStop`: calibrated prediction, running product and gain test per
drafted token, plus its share of the per-round rate update and Newton refit) against the threshold rule's running
product, one torch thread, median of `--repeats`, for a call of `--rounds` rounds of `--steps` tokens (a 96-token
answer took 20-60 rounds on the benchmark prompts) and a call ten times as long (the refit reads every verified
prediction of the call, so its share grows with the call). The draft step it is compared with is
this machine's measured one (`benchmarks/curves/amd-epyc-bf16.json`, bf16, the real draft), and the estimate
itself (the draft's top-1 probability, or the head's forward) is left out: both rules read the same one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from hf_specdecpp.core.cost_aware import CostAwareStop

CURVE = Path(__file__).resolve().parent / "curves" / "amd-epyc-bf16.json"


def cost_aware_per_token(rounds: int, steps: int, costs: tuple[float, list[float]]) -> float:
    """Seconds per drafted token of the cost-aware rule over one call of `rounds` rounds of `steps` tokens."""
    rule = CostAwareStop(None, False, costs[0], costs[1], 20, needs_hidden_states=False)
    acceptance, device = torch.tensor([0.9]), torch.device("cpu")
    start = time.perf_counter()
    for _ in range(rounds):
        rule.start_round(1)
        for step in range(steps):
            bool(rule.observe(acceptance, step, device)[0])
        rule.end_round([steps], [steps // 2])
    return (time.perf_counter() - start) / (rounds * steps)


def threshold_per_token(rounds: int, steps: int, threshold: float = 0.25) -> float:
    """Seconds per drafted token of the threshold rule's running product and test."""
    acceptance = torch.tensor([0.9])
    start = time.perf_counter()
    for _ in range(rounds):
        product = None
        for _ in range(steps):
            product = acceptance if product is None else product * acceptance
            bool((1.0 - product > threshold)[0])
    return (time.perf_counter() - start) / (rounds * steps)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    curve = json.loads(CURVE.read_text())
    costs = (curve["c_draft"], [1.0] + [0.95] * 4 + [1.0 + 0.02 * k for k in range(16)])
    draft_step = curve["draft_step_s"]
    cases = {f"cost-aware, {args.rounds} rounds": lambda: cost_aware_per_token(args.rounds, args.steps, costs),
             f"cost-aware, {10 * args.rounds} rounds": lambda: cost_aware_per_token(10 * args.rounds, args.steps, costs),
             "threshold product": lambda: threshold_per_token(args.rounds, args.steps)}
    print(f"draft step on this machine's curve: {1e3 * draft_step:.1f} ms ({CURVE.name})")
    for name, case in cases.items():
        case()  # warm-up
        seconds = statistics.median(case() for _ in range(args.repeats))
        print(f"{name}: {1e6 * seconds:.1f} us per drafted token ({100 * seconds / draft_step:.2f}% of a draft step)")


if __name__ == "__main__":
    main()
