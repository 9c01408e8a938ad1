"""Greedy DySpec output equals the target's own greedy output, token for token (float32), through both front doors."""

import pytest
import torch
from transformers import GenerationConfig

import hf_specdecpp  # noqa: F401  (installs candidate_generator=)
from hf_specdecpp import DySpecCandidateGenerator
from hf_specdecpp.integration import generate_patch
from hf_specdecpp.testing import tiny_pair

from helpers import CollectingStreamer, constant_head, random_head, stop_and_process_kwargs

PROMPTS = [[2, 5, 6, 7, 8, 9], [3, 17, 4, 40, 41, 42, 43, 12, 13, 14, 15]]
ROUTES = ("candidate_generator", "custom_generate")


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def pair(request):
    target, draft = tiny_pair(request.param, noise=0.05, seed=1)
    with torch.no_grad():  # peaked distributions: deep trees, long accepted paths, and some non-first children
        target.get_output_embeddings().weight.mul_(6.0)
        draft.get_output_embeddings().weight.mul_(6.0)
    return target, draft


SHAPES = {
    "budget1": dict(budget=1),  # a chain of one token
    "budget4": dict(budget=4),
    "budget16": dict(budget=16),
    "wide": dict(budget=16, max_depth=2),  # a shallow, bushy tree
    "head": dict(budget=8, head="random"),  # head-guided growth
    "cost": dict(budget=16, cost_ratio=0.1),  # tree size chosen per round by expected cost
}


def first_tree(target, draft, ids, generator):
    """The selected tree (a `HostTree`) of the first round of `generator` on `ids`."""
    from transformers import LogitsProcessorList

    from hf_specdecpp.core.chain import CallContext
    from hf_specdecpp.core.chain import Rows
    from hf_specdecpp.methods.dyspec.loop import TreeRound

    ctx = CallContext.create(target, draft, GenerationConfig(max_length=64, do_sample=False, eos_token_id=1),
                             LogitsProcessorList())
    rows = Rows.start(ids, None)
    grown = TreeRound(ctx, generator.config, generator.head).grow(rows, ids, ids.shape[1], ids[0])
    return grown.host


def make_generator(shape: str, route: str, draft, streamer=None) -> DySpecCandidateGenerator:
    kwargs = dict(SHAPES[shape])
    if kwargs.get("head") == "random":
        kwargs["head"] = random_head(32, seed=3)
    return DySpecCandidateGenerator(**kwargs, draft_model=draft if route == "custom_generate" else None,
                                    streamer=streamer)


def generate(target, draft, ids, generator, route, **kwargs):
    if route == "candidate_generator":
        return target.generate(ids, assistant_model=draft, candidate_generator=generator, **kwargs)
    return target.generate(ids, custom_generate=generator, **kwargs)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_greedy_equals_target(pair, shape, route):
    target, draft = pair
    for prompt in PROMPTS:
        ids = torch.tensor([prompt])
        reference = target.generate(ids, max_new_tokens=30, do_sample=False)
        generator = make_generator(shape, route, draft)
        out = generate(target, draft, ids, generator, route, max_new_tokens=30, do_sample=False)
        assert torch.equal(out, reference), (shape, route, prompt)
        stats = generator.stats
        assert stats.rounds == stats.target_forwards == len(stats.tree_sizes) > 0
        assert stats.new_tokens == out.shape[1] - ids.shape[1] == stats.accepted_tokens + stats.rounds
        assert stats.accepted_tokens == sum(stats.accepted_lengths) <= stats.drafted_tokens == sum(stats.tree_sizes)
        assert stats.candidate_lengths == stats.tree_sizes
        assert max(stats.tree_sizes) <= SHAPES[shape]["budget"]
        assert [len(ranks) for ranks in stats.accepted_child_ranks] == stats.accepted_lengths
    assert generate_patch.active_call() is None


def test_accepts_children_that_are_not_the_drafts_first_choice(pair):
    """With a budget of 16 some rounds accept a node that is not its parent's first (most probable) child: a
    path a chain drafter would not have proposed; the output is still the target's."""
    target, draft = pair
    ids = torch.tensor([PROMPTS[0]])
    reference = target.generate(ids, max_new_tokens=40, do_sample=False)
    generator = DySpecCandidateGenerator(budget=16)
    out = target.generate(ids, assistant_model=draft, candidate_generator=generator, max_new_tokens=40,
                          do_sample=False)
    assert torch.equal(out, reference)
    ranks = generator.stats.accepted_child_ranks
    assert any(rank > 0 for round_ranks in ranks for rank in round_ranks), ranks
    assert max(generator.stats.accepted_lengths) >= 3  # and the trees are deep enough to accept long paths


def test_head_guided_tree_differs_from_draft_probability_tree(pair):
    target, draft = pair
    ids = torch.tensor([PROMPTS[1]])
    trees = {}
    for name, head in (("dyspec", None), ("pessimistic_head", constant_head(32, 0.05))):
        generator = DySpecCandidateGenerator(budget=8, head=head, draft_model=draft)
        trees[name] = first_tree(target, draft, ids, generator)
    # a head that expects rejections spends the budget on alternatives near the root instead of a deep chain
    assert max(trees["pessimistic_head"].depths) < max(trees["dyspec"].depths)
    assert len(trees["pessimistic_head"].children[0]) > len(trees["dyspec"].children[0])


@pytest.mark.parametrize("length_kwargs", [dict(max_new_tokens=7), dict(max_length=15), dict(max_new_tokens=1)])
def test_length_limits(pair, length_kwargs):
    target, draft = pair
    ids = torch.tensor([PROMPTS[0]])
    reference = target.generate(ids, do_sample=False, **length_kwargs)
    for route in ROUTES:
        generator = make_generator("budget16", route, draft)
        out = generate(target, draft, ids, generator, route, do_sample=False, **length_kwargs)
        assert torch.equal(out, reference), route


def test_eos_handling(pair):
    target, draft = pair
    ids = torch.tensor([PROMPTS[0]])
    free = target.generate(ids, max_new_tokens=12, do_sample=False)
    eos = int(free[0, ids.shape[1] + 5])  # a token the target emits: make it the EOS
    reference = target.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=eos)
    for route in ROUTES:
        generator = make_generator("budget16", route, draft)
        out = generate(target, draft, ids, generator, route, max_new_tokens=12, do_sample=False, eos_token_id=eos)
        assert torch.equal(out, reference), route
        assert int(out[0, -1]) == eos


def test_user_stopping_criteria_and_logits_processors(pair):
    target, draft = pair
    ids = torch.tensor([PROMPTS[1]])

    kwargs = stop_and_process_kwargs()
    reference = target.generate(ids, **kwargs)
    for route in ROUTES:
        out = generate(target, draft, ids, make_generator("budget16", route, draft), route, **kwargs)
        # like the chain loop, a round may overshoot a user criterion by its accepted tokens
        assert torch.equal(out[:, : reference.shape[1]], reference), route


def test_return_dict_scores_and_streamer(pair):
    target, draft = pair
    ids = torch.tensor([PROMPTS[0]])
    reference = target.generate(ids, max_new_tokens=10, do_sample=False, return_dict_in_generate=True,
                                output_scores=True, repetition_penalty=1.2)

    for route in ROUTES:
        streamer = CollectingStreamer()
        generator = make_generator("budget16", route, draft, streamer if route == "custom_generate" else None)
        kwargs = dict(max_new_tokens=10, do_sample=False, return_dict_in_generate=True, output_scores=True,
                      repetition_penalty=1.2)
        if route == "candidate_generator":
            out = target.generate(ids, assistant_model=draft, candidate_generator=generator, streamer=streamer,
                                  **kwargs)
        else:
            out = target.generate(ids, custom_generate=generator, **kwargs)
        assert torch.equal(out.sequences, reference.sequences), route
        assert len(out.scores) == len(reference.scores) == 10
        for ours, theirs in zip(out.scores, reference.scores):  # the target's processed scores of each token
            torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
        assert streamer.chunks[0] == PROMPTS[0] and streamer.ended
        assert sum(streamer.chunks[1:], []) == out.sequences[0, ids.shape[1]:].tolist()
        assert len(streamer.chunks) == generator.stats.rounds + 1


def test_padded_prompt(pair):
    target, draft = pair
    ids = torch.tensor([[0, 0] + PROMPTS[0]])
    mask = torch.tensor([[0, 0] + [1] * len(PROMPTS[0])])
    reference = target.generate(ids, attention_mask=mask, max_new_tokens=15, do_sample=False)
    for route in ROUTES:
        generator = make_generator("budget16", route, draft)
        out = generate(target, draft, ids, generator, route, attention_mask=mask, max_new_tokens=15, do_sample=False)
        assert torch.equal(out, reference), route


def test_generator_reusable_across_calls(pair):
    target, draft = pair
    generator = DySpecCandidateGenerator(budget=6)
    for prompt in PROMPTS:
        ids = torch.tensor([prompt])
        reference = target.generate(ids, max_new_tokens=12, do_sample=False)
        out = target.generate(ids, assistant_model=draft, candidate_generator=generator, max_new_tokens=12,
                              do_sample=False)
        assert torch.equal(out, reference)
        assert generator.stats.new_tokens == out.shape[1] - ids.shape[1]  # stats describe the latest call
