"""Host synchronisations in the hot path, counted deterministically on the CPU.

On a GPU the host waits for the queued kernels at every read of a device value (`.item()`, `.tolist()`,
`bool(tensor)`, `nonzero`, a boolean index, ...) and at every blocking copy of host data to the device
(`torch.tensor(list, device=cuda)`, a host-built tensor moved with `.to(cuda)`). `hf_specdecpp.bench.syncs.
SyncCounter` sees both kinds during a generate() call (on a CPU: every tensor built from host data or by a factory
without a device) and counts the ones made by this package's code; host integers sent through
`core.device.to_device` (pinned memory, non-blocking copy) are counted apart as staged copies, which a GPU does
not wait on. Budgets: the chain loop needs one sync per drafted token (the stop decision) and at most two per
round (the round's outcome, the stopping criteria); the tree loop one per tree level and one per round (the
verdict), never one per node, with or without a cost ratio; both independent of the batch size and of the number
of layers, plus a few once per call (input checks, the rows' lengths, the tree's capability probe). A call with
stopping criteria of its own adds one per accepted token (they see every token; not used here).
"""

from __future__ import annotations

import pytest
import torch

from hf_specdecpp import DySpecCandidateGenerator, FixedLengthCandidateGenerator, SpecDecPPCandidateGenerator
from hf_specdecpp.bench.syncs import SyncCounter
from hf_specdecpp.core.assisted import ChainCandidateGenerator
from hf_specdecpp.testing import tiny_pair

from helpers import producing_head

PER_CALL = {("core/validation.py", None), ("core/chain.py", "create"), ("core/chain.py", "start"),
            ("core/assisted.py", "__init__"), ("methods/dyspec/probe.py", None)}
"""(file, function; None: any) of the counted calls made once per generate() call: input checks, the call's EOS
ids, the rows' prompt lengths (`Rows.start`), the prompt's padding, the tree's capability probe (once per target
model)."""


@pytest.fixture(scope="module")
def pair():
    target, draft = tiny_pair("llama", noise=0.03, seed=1)
    with torch.no_grad():
        target.get_output_embeddings().weight.mul_(5.0)
        draft.get_output_embeddings().weight.mul_(5.0)
    return target, draft


def counted(target, **kwargs):
    """(speculation stats, the syncs counted during the call: reads and blocking uploads)."""
    stats, counter = counted_all(target, **kwargs)
    return stats, counter.syncs


def counted_all(target, **kwargs) -> tuple:
    counter = SyncCounter()
    with counter:
        out = target.generate(**kwargs, return_dict_in_generate=True)
    return out.speculation_stats, counter


def in_loop(places: list[str]) -> list[str]:
    """The counted calls that are not once per call (`PER_CALL`)."""
    def once(place: str) -> bool:
        file, caller = place.split(":")[0], place.split(" ")[1]
        return (file, None) in PER_CALL or (file, caller) in PER_CALL
    return [p for p in places if not once(p)]


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
    assert len(places) - len(in_loop(places)) <= 4, places  # input checks, EOS ids, the rows' lengths: once
    assert len(in_loop(places)) <= stats.draft_forwards + per_round * stats.rounds, places
    drafting = [p for p in places if p.startswith("core/drafting.py")]
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
    assert len(in_loop(places)) <= stats.draft_forwards + 2 * stats.rounds, places


@pytest.mark.parametrize("cost_ratio", [None, 0.05])
@pytest.mark.parametrize("do_sample", [False, True])
@pytest.mark.parametrize("route", ["candidate_generator", "custom_generate"])
def test_tree_syncs_per_level_and_round_not_per_node(pair, do_sample, route, cost_ratio):
    target, draft = pair
    method = DySpecCandidateGenerator(budget=12, cost_ratio=cost_ratio,
                                      draft_model=draft if route == "custom_generate" else None)
    extra = {"assistant_model": draft} if route == "candidate_generator" else {}
    stats, places = counted(target, input_ids=torch.tensor([[2, 5, 6, 7, 8, 9]]), **{route: method}, **extra,
                            max_new_tokens=24, do_sample=do_sample, eos_token_id=None)
    drafted_nodes = sum(stats.tree_sizes)
    probe = [p for p in places if p.startswith("methods/dyspec/probe.py")]  # once per model, not per round
    assert len(probe) <= 16, probe
    # per round: one per level (the frontier, which also brings the selected tree and, sampling with a cost
    # ratio, the root's expected acceptance that fixes the number of levels) and the verdict; per call: the EOS set
    budget = stats.draft_forwards + stats.rounds + 1
    assert len(in_loop(places)) <= budget, places
    assert drafted_nodes > 2 * budget / 3  # the trees are large enough that a per-node sync would break the budget


def prompts_of(batch: int) -> dict:
    """`batch` left-padded prompts of different lengths (one unpadded prompt for batch 1)."""
    generator = torch.Generator().manual_seed(batch)
    lengths = [6] if batch == 1 else [3 + (5 * i) % 9 for i in range(batch)]
    width = max(lengths)
    ids = torch.randint(2, 90, (batch, width), generator=generator)
    mask = (torch.arange(width)[None, :] >= torch.tensor([[width - n] for n in lengths])).long()
    return {"input_ids": ids * mask, "attention_mask": mask}


def sharp_pair(num_layers: int, noise: float):
    target, draft = tiny_pair("llama", noise=noise, seed=1, num_layers=num_layers)
    with torch.no_grad():
        target.get_output_embeddings().weight.mul_(5.0)
        draft.get_output_embeddings().weight.mul_(5.0)
    return target, draft


@pytest.mark.parametrize("num_layers", [2, 4])
@pytest.mark.parametrize("batch", [1, 8])
def test_chain_budget_counts_what_a_gpu_waits_on(batch, num_layers):
    """Reads AND blocking host-to-device copies: one per drafted token plus at most two per round, whatever the
    batch size and the number of layers; per-round host integers go through staged (non-blocking) copies only."""
    target, draft = sharp_pair(num_layers, noise=0.03)
    method = SpecDecPPCandidateGenerator(head=producing_head(32), threshold=0.5, max_candidates=6, draft_model=draft)
    stats, counter = counted_all(target, **prompts_of(batch), custom_generate=method, max_new_tokens=30,
                                 do_sample=False, eos_token_id=None)
    assert stats.rounds > 3
    loop = in_loop(counter.syncs)
    assert not [p for p in loop if p.endswith(" upload")], loop  # no blocking copy of host data in the loop
    assert len(loop) <= stats.draft_forwards + 2 * stats.rounds, loop
    staged = in_loop([p for p in counter.places if p.endswith(" staged")])
    assert len(staged) <= 12 * stats.rounds, staged  # a constant per round (rows leaving included), not per layer


@pytest.mark.parametrize("batch", [1, 8])
def test_counts_do_not_depend_on_the_number_of_layers(batch):
    """A draft identical to its target accepts everything, so the rounds are the same at 2 and 4 layers: so must
    every count be."""
    counts = []
    for num_layers in (2, 4):
        target, draft = sharp_pair(num_layers, noise=0.0)
        stats, counter = counted_all(target, **prompts_of(batch), max_new_tokens=24, do_sample=False,
                                     eos_token_id=None,
                                     custom_generate=FixedLengthCandidateGenerator(3, draft_model=draft))
        counts.append((stats.rounds, stats.draft_forwards, counter.summary()))
    assert counts[0] == counts[1], counts


@pytest.mark.parametrize("num_layers", [2, 4])
def test_tree_budget_counts_what_a_gpu_waits_on(num_layers):
    target, draft = sharp_pair(num_layers, noise=0.03)
    method = DySpecCandidateGenerator(budget=12, draft_model=draft)
    stats, counter = counted_all(target, input_ids=torch.tensor([[2, 5, 6, 7, 8, 9]]), custom_generate=method,
                                 max_new_tokens=24, do_sample=False, eos_token_id=None)
    loop = in_loop(counter.syncs)
    assert not [p for p in loop if p.endswith(" upload")], loop
    assert len(loop) <= stats.draft_forwards + stats.rounds + 1, loop  # + 1: the call's EOS set
    staged = in_loop([p for p in counter.places if p.endswith(" staged")])
    assert len(staged) <= 4 * stats.draft_forwards + 6 * stats.rounds, staged  # per level and round, not per node
