"""Greedy SpecDec++ output equals the target's own greedy output, token for token (float32)."""

import pytest
import torch

import hf_specdecpp  # noqa: F401  (installs candidate_generator=)
from hf_specdecpp import SpecDecPPCandidateGenerator
from hf_specdecpp.testing import tiny_pair

from helpers import constant_head, random_head, stop_and_process_kwargs

PROMPTS = [[2, 5, 6, 7, 8, 9], [3, 17, 4, 40, 41, 42, 43, 12, 13, 14, 15]]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def pair(request):
    return tiny_pair(request.param, noise=0.02, seed=1)


HEADS = {
    "stops_early": lambda: constant_head(32, 1e-6),  # P(reject) ~ 1 after the first scored token
    "never_stops": lambda: constant_head(32, 1.0 - 1e-9),  # drafts up to max_candidates
    "varying": lambda: random_head(32, seed=3),
}


CASES = [("varying", t) for t in (0.05, 0.3, 0.7, 0.95)] + [("stops_early", 0.5), ("never_stops", 0.5)]


@pytest.mark.parametrize("head_name,threshold", CASES)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_target(pair, head_name, threshold, prompt):
    target, draft = pair
    ids = torch.tensor([prompt])
    reference = target.generate(ids, max_new_tokens=30, do_sample=False)
    generator = SpecDecPPCandidateGenerator(head=HEADS[head_name](), threshold=threshold, max_candidates=8)
    out = target.generate(ids, assistant_model=draft, candidate_generator=generator, max_new_tokens=30,
                          do_sample=False)
    assert torch.equal(out, reference)
    stats = generator.stats
    assert stats.rounds == stats.target_forwards == len(stats.candidate_lengths) > 0
    assert stats.new_tokens == out.shape[1] - ids.shape[1]
    assert stats.accepted_tokens + stats.rounds == stats.new_tokens  # each round adds accepted + 1 target token
    assert stats.drafted_tokens == sum(stats.candidate_lengths) == stats.draft_forwards
    assert stats.accepted_tokens == sum(stats.accepted_lengths) <= stats.drafted_tokens
    if head_name == "stops_early":
        assert max(stats.candidate_lengths) <= 2  # the lag: token 1 is never scored, token 2 stops
    if head_name == "never_stops":
        assert max(stats.candidate_lengths) == 8


def test_custom_generate_route_matches(pair):
    target, draft = pair
    ids = torch.tensor([PROMPTS[1]])
    reference = target.generate(ids, max_new_tokens=25, do_sample=False)
    generator = SpecDecPPCandidateGenerator(head=random_head(32), threshold=0.6, draft_model=draft)
    out = target.generate(ids, custom_generate=generator, max_new_tokens=25, do_sample=False)
    assert torch.equal(out, reference)
    assert generator.stats.rounds > 1


def test_draft_forwards_count_one_per_drafted_token(pair):
    target, draft = pair
    calls = []
    handle = draft.register_forward_hook(lambda *a: calls.append(1))
    try:
        generator = SpecDecPPCandidateGenerator(head=random_head(32), threshold=0.5)
        target.generate(torch.tensor([PROMPTS[0]]), assistant_model=draft, candidate_generator=generator,
                        max_new_tokens=20, do_sample=False)
    finally:
        handle.remove()
    assert generator.stats.draft_forwards == len(calls) == generator.stats.drafted_tokens


@pytest.mark.parametrize("length_kwargs", [dict(max_new_tokens=7), dict(max_length=15), dict(max_new_tokens=1)])
def test_length_limits(pair, length_kwargs):
    target, draft = pair
    ids = torch.tensor([PROMPTS[0]])
    reference = target.generate(ids, do_sample=False, **length_kwargs)
    generator = SpecDecPPCandidateGenerator(head=constant_head(32, 1 - 1e-9), max_candidates=10)
    out = target.generate(ids, assistant_model=draft, candidate_generator=generator, do_sample=False,
                          **length_kwargs)
    assert torch.equal(out, reference)


def test_eos_handling(pair):
    target, draft = pair
    ids = torch.tensor([PROMPTS[0]])
    free = target.generate(ids, max_new_tokens=12, do_sample=False)
    eos = int(free[0, ids.shape[1] + 5])  # a token the target emits: make it the EOS
    reference = target.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=eos)
    generator = SpecDecPPCandidateGenerator(head=constant_head(32, 1 - 1e-9), max_candidates=10)
    out = target.generate(ids, assistant_model=draft, candidate_generator=generator, max_new_tokens=12,
                          do_sample=False, eos_token_id=eos)
    assert torch.equal(out, reference)
    assert int(out[0, -1]) == eos


def test_user_stopping_criteria_and_logits_processors(pair):
    target, draft = pair
    ids = torch.tensor([PROMPTS[1]])

    kwargs = stop_and_process_kwargs()
    reference = target.generate(ids, **kwargs)
    for route in ("candidate_generator", "custom_generate"):
        generator = SpecDecPPCandidateGenerator(head=random_head(32), threshold=0.7, draft_model=draft)
        out = target.generate(ids, **{route: generator}, **kwargs)
        assert torch.equal(out, reference), route  # each accepted token is offered to the criteria in order


def test_return_dict_in_generate(pair):
    target, draft = pair
    ids = torch.tensor([PROMPTS[0]])
    reference = target.generate(ids, max_new_tokens=10, do_sample=False)
    generator = SpecDecPPCandidateGenerator(head=random_head(32), threshold=0.5)
    out = target.generate(ids, assistant_model=draft, candidate_generator=generator, max_new_tokens=10,
                          do_sample=False, return_dict_in_generate=True, output_scores=True)
    assert torch.equal(out.sequences, reference)
    assert len(out.scores) == 10


def test_generator_reusable_across_calls(pair):
    target, draft = pair
    generator = SpecDecPPCandidateGenerator(head=random_head(32), threshold=0.5)
    for prompt in PROMPTS:
        ids = torch.tensor([prompt])
        reference = target.generate(ids, max_new_tokens=15, do_sample=False)
        out = target.generate(ids, assistant_model=draft, candidate_generator=generator, max_new_tokens=15,
                              do_sample=False)
        assert torch.equal(out, reference)
        assert generator.stats.new_tokens == out.shape[1] - ids.shape[1]  # stats describe the latest call


def test_higher_threshold_drafts_longer_first_round(pair):
    """Same context, same head: the first round's candidate length grows with the threshold h."""
    target, draft = pair
    ids = torch.tensor([PROMPTS[1]])
    first = []
    for threshold in (0.05, 0.3, 0.7, 0.95):
        generator = SpecDecPPCandidateGenerator(head=random_head(32, seed=3), threshold=threshold, max_candidates=8)
        target.generate(ids, assistant_model=draft, candidate_generator=generator, max_new_tokens=12,
                        do_sample=False)
        first.append(generator.stats.candidate_lengths[0])
    assert first == sorted(first) and first[0] < first[-1], first
