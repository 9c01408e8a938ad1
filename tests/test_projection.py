"""Projected speed-ups from a head's dev traces and a cost curve (`hf_specdecpp.bench.projection`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_specdecpp.bench.projection import batch_cost_curves, project, projection_markdown
from hf_specdecpp.core.costs import CostCurve
from hf_specdecpp.methods.specdecpp.calibration import pack_traces
from hf_specdecpp.testing import tiny_head


def traced_head(seed: int = 0):
    """A head whose traces have accept runs that the draft's confidence predicts."""
    rng = np.random.default_rng(seed)
    preds, labels, features = [], [], []
    for _ in range(10):
        top = np.clip(rng.beta(5, 1.5, size=60), 1e-3, 1.0)
        accepted = (rng.random(60) < top).astype(np.float64)
        entropy = -top * np.log(top) - (1 - top) * np.log(np.clip(1 - top, 1e-9, None))
        preds.append(top)
        labels.append(accepted)
        features.append(np.stack([np.log(top), np.log(top), entropy], axis=1))
    head = tiny_head()
    head.traces = pack_traces(preds, labels, greedy=True, features=features)
    return head, labels


def curve(slope: float) -> CostCurve:
    return CostCurve(0.3, 1.0, {k: 1.0 + slope * k for k in (0, 1, 2, 4, 8, 16, 20)})


def test_projection_rows_and_orderings():
    head, labels = traced_head()
    rows = project(head, curve(0.02), fixed_k=(1, 4), top1=(0.4, 0.9))
    # fixed K = 1 by hand: each round drafts 1 token at cost c + v(1) and yields 1 + accepted-or-not
    cost = tokens = 0.0
    for accepted in labels:
        j = 0
        while j < len(accepted):
            ok = accepted[j] >= 0.5
            tokens += min(1 + ok, len(accepted) - j)
            cost += 0.3 + 1.02
            j += 1 + ok
    assert rows["fixed-K1"]["speedup"] == pytest.approx(tokens / cost)
    assert rows["hf-default (static)"] == rows["top1-0.4"]  # transformers' threshold 0.4 and cap 20
    oracle = rows.pop("oracle")["speedup"]
    assert all(oracle >= r["speedup"] for r in rows.values())
    specdec = next(v for k, v in rows.items() if k.startswith("specdec++"))
    assert specdec["speedup"] >= rows["fixed-K1"]["speedup"]


def test_flat_costs_project_longer_rounds_than_steep_ones():
    head, _ = traced_head(1)
    flat, steep = project(head, curve(0.0)), project(head, curve(0.6))
    pick = lambda rows: next(v for k, v in rows.items() if k.startswith("specdec++"))  # noqa: E731
    assert pick(flat)["mean_candidates"] > pick(steep)["mean_candidates"]
    assert flat["fixed-K16"]["speedup"] > steep["fixed-K16"]["speedup"]
    table = projection_markdown({"flat": flat, "steep": steep}, "tiny")
    assert "| fixed-K16 |" in table and "| specdec++ |" in table and table.count("\n") == len(flat) + 4


def test_projection_needs_features():
    head, _ = traced_head()
    del head.traces["features"]
    with pytest.raises(ValueError, match="no confidence features"):
        project(head, curve(0.0))
    head.traces = None
    with pytest.raises(ValueError, match="no dev traces"):
        project(head, curve(0.0))


def test_batch_cost_curves_from_the_gpu_check():
    """The GPU check's "batch_costs" entries become one cost curve per measured B; skipped sizes are left out."""
    entry = lambda step, slope: {"target_step_s": step, "draft_step_s": 0.3 * step,  # noqa: E731
                                 "verify_s": {str(k): step * (1 + slope * k) for k in (0, 3, 7, 15)}}
    curves = batch_cost_curves({"prefill": 128, "repeats": 5, "batches": {
        "1": entry(0.02, 0.01), "64": entry(0.05, 0.5), "128": {"skipped": "out of memory"}}})
    assert set(curves) == {1, 64} and curves[64].prompt_length == 128
    assert curves[1].c_draft == pytest.approx(0.3) and curves[64].verify_cost[15] == pytest.approx(8.5)
    head, _ = traced_head(2)
    small, large = project(head, curves[1]), project(head, curves[64])
    assert small["fixed-K8"]["speedup"] > large["fixed-K8"]["speedup"]
