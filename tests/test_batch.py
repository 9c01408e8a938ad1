"""Batches: every row of one generate() call equals that row decoded alone, rows finish on their own, and
sampling keeps each row's distribution."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper

from hf_specdecpp import (EntropyStoppingCandidateGenerator, FixedLengthCandidateGenerator, GammaTuneCandidateGenerator,
                          SpecDecPPCandidateGenerator)
from hf_specdecpp.testing import tiny_pair

from helpers import producing_head, random_head, tv_and_bound

PROMPTS = [[2, 5, 6, 7, 8, 9], [3, 17, 4, 40, 41, 42, 43, 12, 13, 14, 15], [9, 10], [44, 45, 46, 47]]
ROUTES = ("candidate_generator", "custom_generate")
METHODS = {
    "specdec++": lambda d=None: SpecDecPPCandidateGenerator(head=random_head(32, seed=3), threshold=0.5,
                                                            max_candidates=6, draft_model=d),
    "specdec++-producing": lambda d=None: SpecDecPPCandidateGenerator(head=producing_head(32), threshold=0.4,
                                                                      max_candidates=6, draft_model=d),
    "fixed-k": lambda d=None: FixedLengthCandidateGenerator(3, draft_model=d),
    "entropy": lambda d=None: EntropyStoppingCandidateGenerator(lam=0.2, max_candidates=5, draft_model=d),
    "gammatune": lambda d=None: GammaTuneCandidateGenerator(initial=2.0, max_candidates=6, draft_model=d),
}


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def pair(request):
    target, draft = tiny_pair(request.param, noise=0.03, seed=1)
    with torch.no_grad():  # peaked distributions: long accepted runs and rows that disagree on lengths
        target.get_output_embeddings().weight.mul_(5.0)
        draft.get_output_embeddings().weight.mul_(5.0)
    return target, draft


def left_padded(prompts: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def generate(target, draft, method_name: str, route: str, ids, mask, **kwargs):
    method = METHODS[method_name](draft if route == "custom_generate" else None)
    extra = {"assistant_model": draft} if route == "candidate_generator" else {}
    out = target.generate(ids, attention_mask=mask, **{route: method}, **extra, return_dict_in_generate=True,
                          **kwargs)
    return out, method


def assert_rows_equal_alone(target, out, prompts, width, max_new_tokens, **kwargs):
    """Row b = its left-padded prompt, then exactly the tokens generate() of that row alone adds, then padding."""
    lengths = []
    for row, prompt in enumerate(prompts):
        alone = target.generate(torch.tensor([prompt]), max_new_tokens=max_new_tokens, do_sample=False,
                                **kwargs)[0, len(prompt):]
        got = out.sequences[row, width:]
        assert torch.equal(got[: alone.shape[0]], alone), (row, got.tolist(), alone.tolist())
        assert bool((got[alone.shape[0]:] == 0).all())  # finished rows are padded, as generate() pads them
        lengths.append(alone.shape[0])
    return lengths


@pytest.mark.parametrize("method_name", list(METHODS))
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("rows", [2, 4])
def test_every_row_equals_that_row_alone(pair, method_name, route, rows):
    target, draft = pair
    prompts = PROMPTS[:rows]
    ids, mask = left_padded(prompts)
    out, method = generate(target, draft, method_name, route, ids, mask, max_new_tokens=20, do_sample=False)
    lengths = assert_rows_equal_alone(target, out, prompts, ids.shape[1], 20)
    stats = out.speculation_stats
    assert stats is method.stats and len(stats.rows) == rows
    assert [r.new_tokens for r in stats.rows] == lengths and stats.new_tokens == sum(lengths)
    for r in stats.rows:  # each row: every round adds its accepted candidates plus one target token
        assert r.accepted_tokens + r.rounds == r.new_tokens and r.accepted_tokens <= r.drafted_tokens
        assert len(r.candidate_lengths) == r.rounds
    assert stats.rounds == stats.target_forwards == max(r.rounds for r in stats.rows)
    assert stats.accepted_tokens == sum(r.accepted_tokens for r in stats.rows)


def test_rows_stop_drafting_on_their_own_predictions(pair):
    """Per-row candidate lengths: in one round, rows draft different numbers of candidates."""
    target, draft = pair
    ids, mask = left_padded(PROMPTS)
    out, _ = generate(target, draft, "specdec++-producing", "custom_generate", ids, mask, max_new_tokens=24,
                      do_sample=False)
    per_round = list(zip(*[r.candidate_lengths for r in out.speculation_stats.rows]))
    assert any(len(set(lengths)) > 1 for lengths in per_round), per_round


def test_finished_rows_leave_the_batch(pair):
    """A row that reached EOS or its length is no longer fed to either model."""
    target, draft = pair
    prompts = [PROMPTS[0], PROMPTS[2]]
    ids, mask = left_padded(prompts)
    alone = target.generate(torch.tensor([prompts[0]]), max_new_tokens=20, do_sample=False)[0, len(prompts[0]):]
    eos = int(alone[3])  # row 0 stops early at this token
    batch_sizes = []
    handle = target.register_forward_hook(lambda module, args, kwargs, output: batch_sizes.append(
        kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        out, _ = generate(target, draft, "fixed-k", "custom_generate", ids, mask, max_new_tokens=20, do_sample=False,
                          eos_token_id=eos)
    finally:
        handle.remove()
    assert_rows_equal_alone(target, out, prompts, ids.shape[1], 20, eos_token_id=eos)
    assert batch_sizes[0] == 2 and batch_sizes[-1] == 1 and sorted(batch_sizes, reverse=True) == batch_sizes


def test_num_return_sequences_with_sampling(pair):
    target, draft = pair
    ids = torch.tensor([PROMPTS[0]])
    torch.manual_seed(0)
    out = target.generate(ids, assistant_model=draft, candidate_generator=METHODS["specdec++"](), do_sample=True,
                          num_return_sequences=4, max_new_tokens=12, return_dict_in_generate=True)
    assert out.sequences.shape[0] == 4 and len(out.speculation_stats.rows) == 4
    assert bool((out.sequences[:, : ids.shape[1]] == ids).all())
    assert len({tuple(row.tolist()) for row in out.sequences}) > 1  # independent samples


def test_batched_bad_input(pair):
    target, draft = pair
    ids, mask = left_padded(PROMPTS[:2])
    with pytest.raises(ValueError, match="needs an attention_mask"):
        target.generate(ids, assistant_model=draft, candidate_generator=METHODS["fixed-k"](), max_new_tokens=4)
    with pytest.raises(ValueError, match="output_scores/output_logits are supported for one sequence"):
        target.generate(ids, attention_mask=mask, custom_generate=METHODS["fixed-k"](draft), max_new_tokens=4,
                        return_dict_in_generate=True, output_scores=True)


# ---------------------------------------------------------------------------------------------- sampling per row
VOCAB, TEMPERATURE, TOP_K = 8, 0.5, 5
SAMPLING_PROMPTS = [[2, 5, 6], [7, 3, 4, 6, 2]]  # different prompts, different lengths, in one batch


@pytest.fixture(scope="module")
def small_pair():
    target, draft = tiny_pair("llama", vocab_size=VOCAB, noise=0.3, seed=3)
    with torch.no_grad():  # flat distributions: many outcomes with visible mass
        target.get_output_embeddings().weight.mul_(0.25)
        draft.get_output_embeddings().weight.mul_(0.25)
    return target, draft


def exact_first_two(model, prompt: list[int]) -> dict[tuple[int, int], float]:
    processors = LogitsProcessorList([TemperatureLogitsWarper(TEMPERATURE), TopKLogitsWarper(TOP_K)])
    ids = torch.tensor([prompt])
    out = {}
    with torch.no_grad():
        p1 = processors(ids, model(ids).logits[:, -1]).softmax(-1)[0]
        for a in range(VOCAB):
            seq = torch.cat([ids, torch.tensor([[a]])], dim=-1)
            p2 = processors(seq, model(seq).logits[:, -1]).softmax(-1)[0]
            for b in range(VOCAB):
                out[(a, b)] = float(p1[a] * p2[b])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("route", ROUTES)
def test_sampling_keeps_each_rows_distribution(small_pair, route):
    target, draft = small_pair
    ids, mask = left_padded(SAMPLING_PROMPTS)
    method = FixedLengthCandidateGenerator(3, draft_model=draft if route == "custom_generate" else None)
    extra = {"assistant_model": draft} if route == "candidate_generator" else {}
    torch.manual_seed(99)
    counts = [dict(), dict()]
    n = 1500
    for _ in range(n):
        out = target.generate(ids, attention_mask=mask, **{route: method}, **extra, do_sample=True,
                              temperature=TEMPERATURE, top_k=TOP_K, max_new_tokens=3, eos_token_id=None)
        for row in range(2):
            key = tuple(out[row, ids.shape[1]: ids.shape[1] + 2].tolist())
            counts[row][key] = counts[row].get(key, 0) + 1
    for row, prompt in enumerate(SAMPLING_PROMPTS):
        tv, bound = tv_and_bound(counts[row], exact_first_two(target, prompt), n, 1e-6)
        assert tv <= bound, (row, tv, bound)
