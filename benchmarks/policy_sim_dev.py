"""Stop rules simulated on a head's dev traces under several machines' cost curves (issue 26), in seconds.

    python benchmarks/policy_sim_dev.py [--head qwen2.5-coder-0.5b-to-1.5b-greedy] [--out FILE]

A head's dev traces (`head.traces`: per position of each dev response, the head's prediction, the draft's
confidence features and whether the target accepts the draft's token there; greedy labels) are what
`hf-specdecpp recalibrate` simulates. A round at position j drafts K tokens as the rule decides, reading the
predictions at j, j + 1, ... along the target's path (after a rejection the draft's own branch would be read
instead: a simplification the exact mode, `benchmarks/policy_curves.py`, does not make), keeps the accepted run
(at most K) and adds the target's token; it costs `K * c + v(K)` target steps. Each response is one call, so the
cost-aware rule (`core.cost_aware`) starts afresh on each. Curves as in `policy_curves.py` (two measured CPUs,
two GPU-like ASSUMPTIONS). Speed-up = tokens / cost, summed over the responses.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np
import torch

from hf_specdecpp import load_shipped_head
from hf_specdecpp.core.cost_aware import CostAwareStop, OnlineSettings
from hf_specdecpp.methods.specdecpp.calibration import policy_from_costs
from hf_specdecpp.methods.specdecpp.generator import expected_rate

from policy_curves import CAP, curves

SVIP_GAMMA = 0.15


def split(traces: dict) -> list[dict]:
    """Per response: head prediction, top-1 probability, entropy and acceptance label arrays."""
    offsets = traces["offsets"].tolist()
    out = []
    for a, b in zip(offsets[:-1], offsets[1:]):
        f = traces["features"][a:b]
        out.append({"pred": traces["pred"][a:b].numpy(), "top1": f[:, 1].exp().numpy(),
                    "entropy": f[:, 2].numpy(), "label": traces["label"][a:b].numpy() > 0.5})
    return out


def runs(label: np.ndarray) -> np.ndarray:
    run = np.zeros(len(label) + 1, dtype=np.int64)
    for j in range(len(label) - 1, -1, -1):
        run[j] = run[j + 1] + 1 if label[j] else 0
    return run[:-1]


def simulate(responses: list[dict], decide: Callable, curve, fresh: Callable | None = None) -> float:
    """Speed-up of a rule `decide(state, response, start, limit) -> K` (`fresh()` makes a call's state, and the
    state's `end_round(drafted, accepted)` is called when present)."""
    table = curve.table(CAP + 1)
    tokens = cost = 0.0
    for r in responses:
        run, n, j = runs(r["label"]), len(r["label"]), 0
        state = fresh() if fresh else None
        while j < n:
            k = decide(state, r, j, min(CAP, n - j))
            accepted = min(k, int(run[j]))
            if state is not None:
                state.end_round([k], [accepted])
            tokens += accepted + 1
            cost += k * curve.c_draft + float(table[k])
            j += accepted + 1
    return tokens / cost


def stop_when(test: Callable) -> Callable:
    """A memoryless rule: stop after token t once `test(response, position)`."""
    def decide(state, r, j, limit):
        for t in range(limit):
            if test(r, j + t):
                return t + 1
        return limit
    return decide


def cost_aware(key: str) -> Callable:
    def decide(state: CostAwareStop, r, j, limit):
        state.start_round(1)
        for t in range(limit):
            if bool(state.observe(torch.tensor([float(r[key][j + t])]), t, torch.device("cpu"))[0]):
                return t + 1
        return limit
    return decide


def threshold(h: float, cap: int = CAP) -> Callable:
    def decide(state, r, j, limit):
        product = 1.0
        for t in range(min(limit, cap)):
            product *= float(r["pred"][j + t])
            if 1.0 - product > h:
                return t + 1
        return min(limit, cap)
    return decide


def rules(curve, head) -> dict[str, tuple[Callable, Callable | None]]:
    table = tuple(float(v) for v in curve.table(CAP + 1))
    auto = policy_from_costs(head, curve, max_candidates=CAP)  # what recalibrate="auto" picks for this curve
    settings = OnlineSettings(prior_rate=expected_rate(auto))
    out = {f"fixed-K{k}": (lambda s, r, j, limit, k=k: min(k, limit), None) for k in range(1, 9)}
    out |= {f"specdec++-h{h:g}": (threshold(h), None) for h in (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)}
    out |= {f"svip-h{h:g}": (stop_when(lambda r, p, h=h: math.sqrt(SVIP_GAMMA * max(r["entropy"][p], 0.0)) > h),
                             None) for h in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)}
    out |= {f"top1-{lam:g}": (stop_when(lambda r, p, lam=lam: r["top1"][p] < lam), None)
            for lam in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)}
    for name, key, lagged in (("cost-aware-head", "pred", False), ("cost-aware-top1", "top1", False)):
        out[name] = (cost_aware(key), lambda lagged=lagged: CostAwareStop(None, lagged, curve.c_draft, table, CAP,
                                                                          False, settings))
    out["specdec++-auto"] = (threshold(auto.threshold, auto.max_candidates), None)
    return out


def oracle(responses, curve) -> float:
    def decide(state, r, j, limit):
        return min(int(runs(r["label"][j:j + limit])[0]) if limit else 0, limit)
    return simulate(responses, decide, curve)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", default="qwen2.5-coder-0.5b-to-1.5b-greedy")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    head = load_shipped_head(args.head)
    responses = split(head.traces)
    lines = [f"{args.head}: {len(responses)} dev responses, {sum(len(r['label']) for r in responses)} positions"]
    for curve_name, curve in curves().items():
        s = {n: simulate(responses, d, curve, f) for n, (d, f) in rules(curve, head).items()}
        s["oracle"] = oracle(responses, curve)
        best = {p: max((n for n in s if n.startswith(p)), key=s.get) for p in ("fixed-K", "specdec++-h", "svip-",
                                                                              "top1-")}
        cells = [f"oracle {s['oracle']:.3f}x"] + [f"{best[p]} {s[best[p]]:.3f}x" for p in best] + [
            f"specdec++-h0.25 (shipped) {s['specdec++-h0.25']:.3f}x", f"specdec++-auto {s['specdec++-auto']:.3f}x",
            f"cost-aware-head {s['cost-aware-head']:.3f}x", f"cost-aware-top1 {s['cost-aware-top1']:.3f}x"]
        lines.append(f"{curve_name} (c={curve.c_draft:.2f}): " + ", ".join(cells))
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
