"""Host synchronisations in the hot path, counted deterministically on the CPU.

On a GPU every read of a device value on the host (`.item()`, `.tolist()`, `bool(tensor)`, `nonzero`, a
boolean index, ...) waits for the queued kernels. A `TorchFunctionMode` sees every such call during a generate()
call; the ones made by this package's code are counted and held to a budget: the chain loop needs one per
drafted token (the stop decision) and a constant few per round; the tree loop one per tree level and a
constant few per round (never one per node).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

import hf_specdecpp
from hf_specdecpp import DySpecCandidateGenerator, FixedLengthCandidateGenerator, SpecDecPPCandidateGenerator
from hf_specdecpp.core.assisted import ChainCandidateGenerator
from hf_specdecpp.testing import tiny_pair

from helpers import producing_head

PACKAGE = str(Path(hf_specdecpp.__file__).parent)
SYNCING = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__,
           torch.Tensor.__float__, torch.Tensor.__index__, torch.Tensor.cpu, torch.Tensor.numpy, torch.nonzero,
           torch.Tensor.nonzero, torch.argwhere, torch.unique, torch.masked_select, torch.Tensor.masked_select}


class SyncCounter(TorchFunctionMode):
    """Counts sync-causing tensor operations whose caller is this package's own code."""

    def __init__(self):
        super().__init__()
        self.places: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self._syncs(func, args, kwargs):
            caller = sys._getframe(1)
            while caller is not None and "/torch/" in caller.f_code.co_filename:
                caller = caller.f_back
            if caller is not None and caller.f_code.co_filename.startswith(PACKAGE):
                self.places.append(f"{Path(caller.f_code.co_filename).name}:{caller.f_lineno} {func.__name__}")
        return func(*args, **kwargs)

    @staticmethod
    def _syncs(func, args, kwargs) -> bool:
        if func in SYNCING:
            return True
        if func is torch.Tensor.__getitem__ and len(args) > 1:  # a boolean mask index has a data-dependent size
            index = args[1]
            return isinstance(index, torch.Tensor) and index.dtype == torch.bool
        return False


@pytest.fixture(scope="module")
def pair():
    target, draft = tiny_pair("llama", noise=0.03, seed=1)
    with torch.no_grad():
        target.get_output_embeddings().weight.mul_(5.0)
        draft.get_output_embeddings().weight.mul_(5.0)
    return target, draft


def counted(target, **kwargs):
    counter = SyncCounter()
    with counter:
        out = target.generate(**kwargs, return_dict_in_generate=True)
    return out.speculation_stats, counter.places


@pytest.mark.parametrize("route", ["candidate_generator", "custom_generate"])
@pytest.mark.parametrize("do_sample", [False, True])
def test_chain_one_sync_per_drafted_token(pair, route, do_sample, monkeypatch):
    target, draft = pair
    handed = []  # what transformers' loop hands the candidate generator as the round's accepted count
    update = ChainCandidateGenerator.update_candidate_strategy
    monkeypatch.setattr(ChainCandidateGenerator, "update_candidate_strategy",
                        lambda self, ids, scores, n: (handed.append(torch.is_tensor(n)), update(self, ids, scores, n)))
    method = SpecDecPPCandidateGenerator(head=producing_head(32), threshold=0.5, max_candidates=6,
                                         draft_model=draft if route == "custom_generate" else None)
    extra = {"assistant_model": draft} if route == "candidate_generator" else {}
    stats, places = counted(target, input_ids=torch.tensor([[2, 5, 6, 7, 8, 9]]), **{route: method}, **extra,
                            max_new_tokens=30, do_sample=do_sample, eos_token_id=None)
    assert stats.rounds > 3
    # one per drafted token (the stop decision); on our own loop two more per round (the round's outcome, the
    # stopping criteria) and one per call (the rows' lengths), plus the call's input checks; transformers' loop
    # does its own bookkeeping for the candidate route
    # (releases that hand the accepted count over as a tensor, e.g. 5.15, cost one read of it per round)
    per_round = 2 if route == "custom_generate" else int(any(handed))
    per_call = [p for p in places if p.startswith(("validation.py", "assisted.py:36"))]  # input checks, once
    assert len(per_call) <= 2, per_call
    assert len(places) - len(per_call) <= stats.draft_forwards + per_round * stats.rounds + 1, places
    drafting = [p for p in places if p.startswith("drafting.py")]
    # the stop decision is read after every drafted token except the one that reaches the round's cap
    assert stats.draft_forwards - stats.rounds <= len(drafting) <= stats.draft_forwards, drafting


def test_batched_chain_syncs_do_not_grow_with_the_batch(pair):
    target, draft = pair
    prompts = [[2, 5, 6, 7, 8, 9], [3, 17, 4, 40, 41, 42, 43, 12, 13], [9, 10], [44, 45, 46, 47]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    stats, places = counted(target, input_ids=ids, attention_mask=mask,
                            custom_generate=FixedLengthCandidateGenerator(3, draft_model=draft), max_new_tokens=20,
                            do_sample=False)
    assert len(stats.rows) == 4
    assert len(places) <= stats.draft_forwards + 2 * stats.rounds + 1, places


@pytest.mark.parametrize("do_sample", [False, True])
@pytest.mark.parametrize("route", ["candidate_generator", "custom_generate"])
def test_tree_syncs_per_level_and_round_not_per_node(pair, do_sample, route):
    target, draft = pair
    method = DySpecCandidateGenerator(budget=12, draft_model=draft if route == "custom_generate" else None)
    extra = {"assistant_model": draft} if route == "candidate_generator" else {}
    stats, places = counted(target, input_ids=torch.tensor([[2, 5, 6, 7, 8, 9]]), **{route: method}, **extra,
                            max_new_tokens=24, do_sample=do_sample, eos_token_id=None)
    drafted_nodes = sum(stats.tree_sizes)
    probe = [p for p in places if p.startswith("probe.py")]  # the capability probe: once per target model
    assert len(probe) <= 2, probe
    places = [p for p in places if not p.startswith("probe.py")]
    # per round: one per level (the frontier), the selected tree, the verdict, the stopping criteria; per call: 2
    budget = stats.draft_forwards + 3 * stats.rounds + 2
    assert len(places) <= budget, places
    assert drafted_nodes > 2 * budget / 3  # the trees are large enough that a per-node sync would break the budget
