"""Sampling with SpecDec++ keeps the target's distribution (exact enumeration on a tiny vocabulary).

The target's exact joint distribution P of the first two generated tokens is enumerated from its processed
logits. N samples from generate() then give an empirical distribution whose total-variation distance to P is,
under a correct implementation, at most E[TV] + sqrt(ln(1/delta) / (2N)) with probability 1 - delta
(McDiarmid: one sample moves TV by at most 1/N), where E[TV] <= 0.5 * sum_x sqrt(P(x) / N).
With delta = 1e-6 the test fails by chance once in a million runs. The same detector must flag a generator
that returns the draft's UNPROCESSED logits instead of the scores its tokens were drawn from.
"""

import functools

import pytest
import torch
from transformers import (LogitsProcessorList, StoppingCriteria, StoppingCriteriaList, TemperatureLogitsWarper,
                          TopKLogitsWarper)

from hf_specdecpp import EntropyMethod, SpecDecPPCandidateGenerator
from hf_specdecpp.core.assisted import ChainCandidateGenerator
from hf_specdecpp.head import HeadPolicy
from hf_specdecpp.testing import tiny_pair

from helpers import constant_head, producing_head, tv_and_bound

VOCAB = 8
PROMPT = torch.tensor([[2, 5, 6]])  # no pad/bos token (0) inside: no attention-mask subtleties
TEMPERATURE, TOP_K = 0.4, 4
NUM_SAMPLES = 2000
DELTA = 1e-6
GENERATE_KWARGS = dict(do_sample=True, temperature=TEMPERATURE, top_k=TOP_K, max_new_tokens=3, eos_token_id=None)


@pytest.fixture(scope="module")
def pair():
    target, draft = tiny_pair("llama", vocab_size=VOCAB, noise=0.3, seed=3)
    with torch.no_grad():  # flatter logits: many outcomes have visible probability
        target.get_output_embeddings().weight.mul_(0.25)
        draft.get_output_embeddings().weight.mul_(0.25)
    return target, draft


def exact_first_two(model) -> dict[tuple[int, int], float]:
    """P(t1, t2 | prompt) under temperature + top-k processing, by enumeration."""
    processors = LogitsProcessorList([TemperatureLogitsWarper(TEMPERATURE), TopKLogitsWarper(TOP_K)])
    out = {}
    with torch.no_grad():
        p1 = processors(PROMPT, model(PROMPT).logits[:, -1]).softmax(-1)[0]
        for a in range(VOCAB):
            seq = torch.cat([PROMPT, torch.tensor([[a]])], dim=-1)
            p2 = processors(seq, model(seq).logits[:, -1]).softmax(-1)[0]
            for b in range(VOCAB):
                out[(a, b)] = float(p1[a] * p2[b])
    return out


def empirical_tv(target, draft, generator_cls, route="candidate_generator", head=None,
                 max_new_tokens: int = 3) -> tuple[float, float, list[int]]:
    """TV of the first two generated tokens' empirical law to the target's exact one, its bound, and the first
    round's candidate count per call (`max_new_tokens` > 3 lets a first round draft past the two tokens compared)."""
    exact = exact_first_two(target)
    # default: a head that always predicts acceptance: the first round drafts 2 tokens, so two candidates get verified
    head = head if head is not None else constant_head(32, 1 - 1e-9)
    generator = generator_cls(head=head, threshold=0.5, max_candidates=4, draft_model=draft)
    torch.manual_seed(1234)
    counts: dict[tuple[int, int], int] = {}
    first_round_lengths = []
    for _ in range(NUM_SAMPLES):
        out = target.generate(PROMPT, **{route: generator}, **dict(GENERATE_KWARGS, max_new_tokens=max_new_tokens))
        key = tuple(out[0, PROMPT.shape[1]: PROMPT.shape[1] + 2].tolist())
        counts[key] = counts.get(key, 0) + 1
        first_round_lengths.append(generator.stats.candidate_lengths[0])
    tv, bound = tv_and_bound(counts, exact, NUM_SAMPLES, DELTA)
    return tv, bound, first_round_lengths


class UnprocessedScores(ChainCandidateGenerator):
    """A deliberately broken per-call generator: returns the draft's raw logits, not the processed scores its
    tokens were drawn from."""

    def get_candidates(self, input_ids, **kwargs):
        candidates, scores = super().get_candidates(input_ids)
        if scores is None:
            return candidates, scores
        with torch.no_grad():
            raw = self.ctx.draft(candidates).logits[:, input_ids.shape[1] - 1: -1].float()
        return candidates, raw


class UnprocessedScoresGenerator(SpecDecPPCandidateGenerator):
    def new_candidate_generator(self, ctx, input_ids, attention_mask, stopping_criteria=None):
        return UnprocessedScores(ctx, self.chain_spec(ctx), input_ids, attention_mask, stopping_criteria)


@pytest.mark.slow
@pytest.mark.parametrize("route", ["candidate_generator", "custom_generate"])
def test_sampling_preserves_target_distribution(pair, route):
    target, draft = pair
    tv, bound, first_round = empirical_tv(target, draft, SpecDecPPCandidateGenerator, route)
    assert set(first_round) == {2}  # every call verified two drafted candidates in its first round
    assert tv <= bound, f"TV {tv:.4f} exceeds the bound {bound:.4f}"


@pytest.mark.slow
def test_sampling_with_a_producing_state_head(pair):
    """Round lengths that depend on each drafted token's own draft probability keep the target's law."""
    target, draft = pair
    head = producing_head(32, feature_weights=(4.0, 0.0, 0.0), bias=4.5)  # P(accept) rises with q(token)
    tv, bound, first_round = empirical_tv(target, draft, SpecDecPPCandidateGenerator, head=head)
    assert {1, 2} <= set(first_round)  # the first round's length varied with the drafted tokens
    assert tv <= bound, f"TV {tv:.4f} exceeds the bound {bound:.4f}"


@pytest.mark.slow
def test_sampling_with_the_cost_aware_rule(pair):
    """The cost-aware rule (round lengths from each drafted token's own prediction, the call's rate and an online
    calibration that moves with every verification) keeps the target's law."""
    target, draft = pair
    head = producing_head(32, feature_weights=(4.0, 0.0, 0.0), bias=4.5)
    cost_aware = functools.partial(SpecDecPPCandidateGenerator, stop_rule="cost-aware")
    tv, bound, first_round = empirical_tv(target, draft, cost_aware, head=head)
    assert len(set(first_round)) > 1  # the first round's length varied with the drafted tokens
    assert tv <= bound, f"TV {tv:.4f} exceeds the bound {bound:.4f}"


@pytest.mark.slow
def test_sampling_with_specdecpp_reading_the_drafts_top1(pair):
    """SpecDec++'s default for a head whose dev traces favour the draft's confidence (`estimator="top1"`): the
    cost-aware rule on the draft's top-1 probability, with the head's policy's costs, keeps the target's law."""
    target, draft = pair
    head = producing_head(32)
    # given (not measured) cheap costs, valid on any device: long enough rounds for their length to vary
    head.policy = HeadPolicy(threshold=0.5, max_candidates=4, cost_ratio=0.02, verify_costs=(1.0, 1.0, 1.0))
    top1 = functools.partial(SpecDecPPCandidateGenerator, stop_rule="cost-aware", estimator="top1")
    tv, bound, first_round = empirical_tv(target, draft, top1, head=head, max_new_tokens=6)
    assert len(set(first_round)) > 1  # the first round's length varied with the drafted tokens
    assert tv <= bound, f"TV {tv:.4f} exceeds the bound {bound:.4f}"


@pytest.mark.slow
def test_sampling_with_the_training_free_cost_aware_rule(pair):
    """The cost-aware rule fed with the draft's top-1 probability (no head) keeps the target's law. Its first
    decision reads only the prompt's draft distribution, so the round may run past the first two tokens: whether it
    drafts a third one depends on the tokens drafted before."""
    target, draft = pair

    def top1_cost_aware(head, threshold, **kwargs):
        return EntropyMethod(estimator="top1", stop_rule="cost-aware", cost_ratio=0.02,
                             verify_costs=(1.0, 1.0, 1.0), **kwargs)

    tv, bound, first_round = empirical_tv(target, draft, top1_cost_aware, max_new_tokens=6)
    assert {2, 3} <= set(first_round)  # the first round's length varied with the drafted tokens
    assert tv <= bound, f"TV {tv:.4f} exceeds the bound {bound:.4f}"


@pytest.mark.slow
def test_detector_flags_unprocessed_draft_scores(pair):
    target, draft = pair
    tv, bound, _ = empirical_tv(target, draft, UnprocessedScoresGenerator)
    # with processed scores the TV stays below the bound; raw scores shift the distribution far beyond it
    assert tv > bound, f"TV {tv:.4f} should exceed the bound {bound:.4f} when raw logits are returned"


class StopAtToken(StoppingCriteria):
    def __init__(self, token: int):
        self.token = token

    def __call__(self, input_ids, scores, **kwargs):
        return input_ids[:, -1] == self.token


def exact_with_stop_token(model, stop: int, length: int) -> dict[tuple[int, ...], float]:
    """P(output) for `length` new tokens when a criterion stops the sequence after the token `stop`."""
    processors = LogitsProcessorList([TemperatureLogitsWarper(TEMPERATURE), TopKLogitsWarper(TOP_K)])
    out: dict[tuple[int, ...], float] = {}

    def walk(tokens: tuple[int, ...], mass: float) -> None:
        if len(tokens) == length or (tokens and tokens[-1] == stop):
            out[tokens] = out.get(tokens, 0.0) + mass
            return
        seq = torch.cat([PROMPT, torch.tensor([list(tokens)], dtype=torch.long)], dim=-1)
        with torch.no_grad():
            p = processors(seq, model(seq).logits[:, -1]).softmax(-1)[0]
        for t in range(VOCAB):
            if p[t] > 0:
                walk(tokens + (t,), mass * float(p[t]))

    walk((), 1.0)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("route", ["candidate_generator", "custom_generate"])
def test_a_stop_token_criterion_keeps_the_target_distribution(pair, route):
    """A criterion that stops at a token ends the round there (the candidates after it, and the target's own token,
    are dropped): the law of the whole output is still the target alone's with that criterion."""
    target, draft = pair
    stop = max(exact_first_two(target).items(), key=lambda item: item[1])[0][0]  # the likeliest first token
    exact = exact_with_stop_token(target, stop, 3)
    generator = SpecDecPPCandidateGenerator(head=constant_head(32, 1 - 1e-9), threshold=0.5, max_candidates=4,
                                            draft_model=draft)
    kwargs = dict(GENERATE_KWARGS, stopping_criteria=StoppingCriteriaList([StopAtToken(stop)]))
    torch.manual_seed(4321)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(NUM_SAMPLES):
        out = target.generate(PROMPT, **{route: generator}, **kwargs)
        key = tuple(out[0, PROMPT.shape[1]:].tolist())
        counts[key] = counts.get(key, 0) + 1
    assert sum(c for k, c in counts.items() if len(k) < 3) > NUM_SAMPLES / 10  # the criterion cut many calls
    tv, bound = tv_and_bound(counts, exact, NUM_SAMPLES, DELTA)
    assert tv <= bound, f"TV {tv:.4f} exceeds the bound {bound:.4f}"
