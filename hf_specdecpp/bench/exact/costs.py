"""Counts into time: the cost curve measured on the machine (`core.costs.measure_costs`: c = draft step / target
step, v(K) = target pass over K candidates / target step), and prompt prefill times for predicting wall clock.

A chain round with K candidates costs `K * c + v(K)` target decode steps, a tree round `v(nodes)` plus `c` per
draft pass, target alone one step per token. Prefill (the prompt) is left out of the exact speedups: it is the
same work for every configuration. Predicted wall-clock time adds it back (`predicted_seconds`).
"""

from __future__ import annotations

import statistics

import torch

from ...core.compat import cache_kwargs
from ...core.costs import VERIFY_KS, CostCurve, measure_costs
from ...utils.timing import timed
from .records import ExactRecord


def cost_units(record: ExactRecord, costs: CostCurve, head_overhead: float = 0.0) -> float:
    """The record's cost in target decode steps (target alone: its new tokens). `head_overhead`: what scoring a
    drafted token with the acceptance head adds, as a fraction of a draft step (`bench.overhead`), for
    configurations that use a head."""
    if not record.candidate_lengths and not record.tree_sizes:
        return float(record.new_tokens)
    c = costs.c_draft * (1.0 + head_overhead)
    if record.tree_sizes:
        table = costs.table(max(record.tree_sizes))
        return record.draft_forwards * c + sum(float(table[n]) for n in record.tree_sizes)
    table = costs.table(max(record.candidate_lengths))
    return sum(k * c + float(table[k]) for k in record.candidate_lengths)


def measure_machine_costs(draft, target, max_candidates: int, repeats: int, prompt_length: int = 128) -> CostCurve:
    """The cost curve of this machine, timing v(K) at the default points up to `max_candidates` (beyond, v is
    extrapolated linearly)."""
    ks = tuple(k for k in VERIFY_KS if k <= max(max_candidates, 1))
    return measure_costs(draft, target, ks=ks, repeats=repeats, warmup=2, prompt_length=prompt_length)


@torch.no_grad()
def measure_prefill(model, input_ids: torch.LongTensor, repeats: int = 3) -> float:
    """Median seconds of one forward pass of `model` over the prompt with an empty cache."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    ids = input_ids.to(device)

    def once():
        model(input_ids=ids, **cache_kwargs(model, DynamicCache(config=model.config)), use_cache=True,
              logits_to_keep=1)

    once()
    return statistics.median(timed(once, model)[1] for _ in range(repeats))


def predicted_seconds(record: ExactRecord, costs: CostCurve, target_prefill_s: float, draft_prefill_s: float) -> float:
    """Wall-clock estimate of the call: prefill plus decode steps. The first round's first draft step and verify
    pass read the prompt, so they are counted as the two prefills."""
    step = costs.target_step_s
    units = record.units if record.units is not None else cost_units(record, costs)
    if not record.candidate_lengths and not record.tree_sizes:
        return target_prefill_s + step * max(record.new_tokens - 1, 0)
    return target_prefill_s + draft_prefill_s + step * max(units - 1.0 - costs.c_draft, 0.0)
