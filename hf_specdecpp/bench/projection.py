"""Projected speed-ups from a head's dev traces and a cost curve: what each policy would gain on a machine whose
costs were measured (e.g. by the GPU check) but where nothing was generated.

The traces (`head.traces`: per dev position the head's prediction, the acceptance outcome and the draft's
confidence features log q(token), log q max, entropy) are walked in rounds exactly as the calibration does
(`methods.specdecpp.calibration.simulate_rounds`): each policy decides K from what it sees at each position, the
round accepts the leading accepted positions and costs `K * c + v(K)` target steps. Policies: fixed K, the
entropy stopper and the top-1 confidence rule at each threshold, transformers' confidence stopping at its
default (top probability < 0.4, at most 20 candidates, no online re-tuning), SpecDec++ re-calibrated for
these costs (`policy_from_costs`: the h and cap chosen on the same traces) and the oracle.

A projection, not a measurement: the traces follow the dev responses, so the decisions after a rejection within a
round use the true path's positions, and the traces are those of the machine and dtype that made them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import numpy as np

from ..core.costs import CostCurve
from ..head import AcceptanceHead
from ..methods.specdecpp.calibration import (
    acceptance_outcomes,
    policy_from_costs,
    simulate_policy,
    simulate_rounds,
    unpack_traces,
)

HF_CONFIDENCE = 0.4
HF_MAX_CANDIDATES = 20


def batch_cost_curves(batch_costs: dict) -> dict[int, CostCurve]:
    """A `CostCurve` per measured batch size B from the GPU check's "batch_costs" stage (costs in target steps at
    that B), so that `project` gives each policy's speed-up over the target alone at the same batch size."""
    return {int(b): CostCurve(float(e["draft_step_s"]), float(e["target_step_s"]),
                              {int(k): float(t) for k, t in e["verify_s"].items()}, {},
                              int(batch_costs.get("prefill", 0)), int(batch_costs.get("repeats", 0)))
            for b, e in batch_costs.get("batches", {}).items() if "target_step_s" in e}


def _feature_rule(values: list[np.ndarray], below: float, cap: int) -> Callable:
    """A round length rule: draft until the value of a drafted token falls below `below` (that token is still
    proposed, as the methods do), at most `cap` candidates."""

    def round_length(r: int, j: int, n: int, run: np.ndarray) -> int:
        limit = min(cap, n - j)
        row = values[r]
        for t in range(1, limit + 1):
            if row[j + t - 1] < below:
                return t
        return limit

    return round_length


def trace_features(head: AcceptanceHead) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], bool]:
    """(head predictions, labels, draft confidence features `(n, 3)`) per dev response, and whether greedy."""
    if not head.traces:
        raise ValueError("the head ships no dev traces (head.traces): calibrate it with `hf-specdecpp calibrate`")
    preds, labels, greedy = unpack_traces(head.traces)
    if "features" not in head.traces:
        raise ValueError("the head's traces hold no confidence features: calibrate it again with this version")
    features = head.traces["features"].double().numpy()
    offsets = head.traces["offsets"].tolist()
    return preds, labels, [features[a:b] for a, b in zip(offsets[:-1], offsets[1:])], greedy


def project(head: AcceptanceHead, costs: CostCurve, fixed_k: Sequence[int] = (1, 2, 3, 4, 6, 8, 12, 16),
            entropy_lams: Sequence[float] = (0.1, 0.2, 0.3, 0.5), top1: Sequence[float] = (0.3, 0.5, 0.7, 0.9),
            max_candidates: int = 20) -> dict[str, dict]:
    """Projected cost per token and speed-up of every policy under `costs` (see the module docstring)."""
    preds, labels, features, greedy = trace_features(head)
    outcomes = acceptance_outcomes(labels, greedy)
    top = max(max_candidates, HF_MAX_CANDIDATES, *fixed_k)
    table = costs.table(top)
    c = costs.c_draft
    out = {f"fixed-K{k}": simulate_policy(preds, outcomes, fixed_k=k, c_draft=c, verify_costs=table,
                                          max_candidates=max_candidates) for k in fixed_k}
    entropy = [1.0 - np.sqrt(np.clip(f[:, 2], 0.0, None)) for f in features]
    top_prob = [np.exp(f[:, 1]) for f in features]
    for lam in entropy_lams:
        out[f"entropy-{lam:g}"] = simulate_rounds(outcomes, _feature_rule(entropy, lam, max_candidates), c_draft=c,
                                                  verify_costs=table, max_k=top)
    for threshold in top1:
        out[f"top1-{threshold:g}"] = simulate_rounds(outcomes, _feature_rule(top_prob, threshold, max_candidates),
                                                     c_draft=c, verify_costs=table, max_k=top)
    out["hf-default (static)"] = simulate_rounds(outcomes, _feature_rule(top_prob, HF_CONFIDENCE, HF_MAX_CANDIDATES),
                                                 c_draft=c, verify_costs=table, max_k=top)
    policy = policy_from_costs(head, costs, max_candidates=max_candidates)
    out[f"specdec++ (h {policy.threshold:.2f}, cap {policy.max_candidates})"] = simulate_policy(
        preds, outcomes, threshold=policy.threshold, c_draft=c, verify_costs=table,
        max_candidates=policy.max_candidates, lagged=not head.scores_without_lag)
    out["oracle"] = simulate_policy(preds, outcomes, oracle=True, c_draft=c, verify_costs=table,
                                    max_candidates=max_candidates)
    return out


def projection_markdown(projections: dict[str, dict[str, dict]], title: str) -> str:
    """One table: a row per policy, a column per cost curve (speed-up over the target alone, mean K)."""
    names = list(next(iter(projections.values())))
    lines = [f"**{title}**", "", "| policy | " + " | ".join(projections) + " |",
             "|---" * (len(projections) + 1) + "|"]
    for name in names:
        cells = []
        for rows in projections.values():
            match = rows.get(name) or next((v for k, v in rows.items() if k.split(" (")[0] == name.split(" (")[0]),
                                            None)
            cells.append(f"{match['speedup']:.2f}x (K {match['mean_candidates']:.1f})" if match else "-")
        lines.append(f"| {name.split(' (h')[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
