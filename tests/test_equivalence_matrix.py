"""One greedy equality tester over methods x routes x options: every call equals the target alone's (float32).

Each case passes `stopping_criteria`, logits processors, generation options and left-padded batches to
generate() the way users do, and compares the whole output with `target.generate(...)` called with the same
arguments and no draft. Options cover transformers' own stopping criteria shapes (a stop token read from the
last position, a length) and every logits processor generate() builds from its arguments, one
at a time and all together. Batches run for the methods that decode batches (chains), one sequence through
transformers' assisted decoding (`candidate_generator=`) or the method's own loop (`custom_generate=`, trees).
"""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList, NoRepeatNGramLogitsProcessor, StoppingCriteria, StoppingCriteriaList

from hf_specdecpp import (DySpecCandidateGenerator, EntropyStoppingCandidateGenerator, FixedLengthCandidateGenerator,
                          GammaTuneCandidateGenerator, SpecDecPPCandidateGenerator)
from hf_specdecpp.testing import tiny_pair

from helpers import producing_head, random_head

MAX_NEW_TOKENS = 20
PROMPT = [3, 17, 4, 40, 41, 42]
BATCH = [[2, 5, 6, 7, 8, 9], [3, 17, 4, 40, 41, 42, 43, 12], [44, 45, 46]]
ROUTES = ("candidate_generator", "custom_generate")
METHODS = {
    "specdec++": lambda d: SpecDecPPCandidateGenerator(head=random_head(32, seed=3), threshold=0.5, max_candidates=6,
                                                       draft_model=d),
    "specdec++-producing": lambda d: SpecDecPPCandidateGenerator(head=producing_head(32), threshold=0.4,
                                                                 max_candidates=6, draft_model=d),
    "specdec++-cost-aware": lambda d: SpecDecPPCandidateGenerator(head=random_head(32, seed=3), stop_rule="cost-aware",
                                                                  max_candidates=6, draft_model=d),
    "specdec++-top1": lambda d: SpecDecPPCandidateGenerator(head=producing_head(32), estimator="top1",
                                                            max_candidates=6, draft_model=d),
    "fixed-k": lambda d: FixedLengthCandidateGenerator(5, draft_model=d),
    "entropy": lambda d: EntropyStoppingCandidateGenerator(lam=0.2, max_candidates=5, draft_model=d),
    "svip": lambda d: EntropyStoppingCandidateGenerator(lam=0.6, estimator="svip", max_candidates=6, draft_model=d),
    "top1-cost-aware": lambda d: EntropyStoppingCandidateGenerator(estimator="top1", stop_rule="cost-aware",
                                                                   max_candidates=6, draft_model=d),
    "gammatune": lambda d: GammaTuneCandidateGenerator(initial=2.0, max_candidates=6, draft_model=d),
    "dyspec": lambda d: DySpecCandidateGenerator(budget=8, draft_model=d),
}
BATCH_METHODS = [name for name in METHODS if name != "dyspec"]


class StopAtToken(StoppingCriteria):
    """Stops a row whose last token is `token` (the shape of transformers' stop-token and stop-string criteria)."""

    def __init__(self, token: int):
        self.token = token

    def __call__(self, input_ids, scores, **kwargs):
        return input_ids[:, -1] == self.token


class StopAtLength(StoppingCriteria):
    """Stops every row once the sequence holds `length` ids (prompt included)."""

    def __init__(self, length: int):
        self.length = length

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), input_ids.shape[1] >= self.length, dtype=torch.bool,
                          device=input_ids.device)


def _options(plain: list[int]) -> dict[str, dict]:
    """generate() kwargs per option; `plain` is the target's plain greedy continuation (tokens chosen from it
    make every criterion and processor change the output)."""
    early, later = plain[2], plain[5]

    def allowed(batch_id: int, ids: torch.Tensor) -> list[int]:  # a different vocabulary per row
        return list(range(6 + batch_id, 96, 2))

    options = {
        "stop-last-token": dict(stopping_criteria=StoppingCriteriaList([StopAtToken(later)])),
        "stop-last-token-early": dict(stopping_criteria=StoppingCriteriaList([StopAtToken(plain[3])])),
        "stop-length": dict(stopping_criteria=StoppingCriteriaList([StopAtLength(len(BATCH[1]) + 7)])),
        "repetition_penalty": dict(repetition_penalty=1.4),
        "no_repeat_ngram_size": dict(no_repeat_ngram_size=2),
        "user-processor": dict(logits_processor=LogitsProcessorList([NoRepeatNGramLogitsProcessor(3)])),
        "min_new_tokens": dict(eos_token_id=early, min_new_tokens=6),
        "min_length": dict(eos_token_id=early, min_length=len(BATCH[1]) + 5),
        "bad_words_ids": dict(bad_words_ids=[[early], [plain[3], plain[4]]]),
        "sequence_bias": dict(sequence_bias=[[[early], -5.0], [[plain[1], plain[2] + 1], 8.0]]),
        "suppress_tokens": dict(suppress_tokens=[later], begin_suppress_tokens=[plain[0]]),
        "forced_eos_token_id": dict(forced_eos_token_id=1),
        "exponential_decay_length_penalty": dict(eos_token_id=early, exponential_decay_length_penalty=(3, 1.5)),
        "prefix_allowed_tokens_fn": dict(prefix_allowed_tokens_fn=allowed),
        "renormalize_logits": dict(renormalize_logits=True, repetition_penalty=1.2),
    }
    options["all-together"] = dict(
        stopping_criteria=StoppingCriteriaList([StopAtToken(later), StopAtLength(len(BATCH[1]) + 15)]),
        repetition_penalty=1.2, no_repeat_ngram_size=3, min_new_tokens=4, bad_words_ids=[[plain[7]]],
        suppress_tokens=[plain[9]], prefix_allowed_tokens_fn=allowed, renormalize_logits=True)
    return options


FAST_OPTIONS = {"stop-last-token", "stop-last-token-early", "stop-length", "repetition_penalty",
                "prefix_allowed_tokens_fn", "all-together"}
"""Options every test run covers; the other processors one at a time are `slow` (CI's 2 cores: about a minute)."""


def _params(names: list[str]) -> list:
    return [pytest.param(name, marks=() if name in FAST_OPTIONS else pytest.mark.slow) for name in names]


OPTION_NAMES = list(_options(list(range(10, 30))))
BATCH_OPTIONS = ["stop-last-token", "stop-last-token-early", "stop-length", "repetition_penalty",
                 "no_repeat_ngram_size", "min_new_tokens", "prefix_allowed_tokens_fn", "all-together"]


@pytest.fixture(scope="module")
def pair():
    target, draft = tiny_pair("llama", noise=0.03, seed=1)
    with torch.no_grad():  # peaked distributions: long accepted runs, so criteria fire inside rounds
        target.get_output_embeddings().weight.mul_(5.0)
        draft.get_output_embeddings().weight.mul_(5.0)
    return target, draft


@pytest.fixture(scope="module")
def options(pair):
    target, _ = pair
    plain = target.generate(torch.tensor([PROMPT]), max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    return _options(plain[0, len(PROMPT):].tolist())


def left_padded(prompts: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def assert_equals_target(pair, method_name: str, route: str, inputs: dict, kwargs: dict) -> None:
    target, draft = pair
    common = dict(max_new_tokens=MAX_NEW_TOKENS, do_sample=False, **inputs, **kwargs)
    reference = target.generate(**common)
    method = METHODS[method_name](draft if route == "custom_generate" else None)
    extra = {"assistant_model": draft} if route == "candidate_generator" else {}
    out = target.generate(**common, **{route: method}, **extra)
    assert torch.equal(out, reference), (out.tolist(), reference.tolist())
    stats = method.stats  # a cut round counts only the tokens kept
    if out.shape[0] == 1:
        assert stats.new_tokens == out.shape[1] - inputs["input_ids"].shape[1] == stats.accepted_tokens + stats.rounds


@pytest.mark.parametrize("option", _params(OPTION_NAMES))
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("method_name", list(METHODS))
def test_one_sequence_equals_target(pair, options, method_name, route, option):
    assert_equals_target(pair, method_name, route, dict(input_ids=torch.tensor([PROMPT])), options[option])


@pytest.mark.parametrize("option", _params(BATCH_OPTIONS))
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("method_name", BATCH_METHODS)
def test_left_padded_batch_equals_target(pair, options, method_name, route, option):
    ids, mask = left_padded(BATCH)
    assert_equals_target(pair, method_name, route, dict(input_ids=ids, attention_mask=mask), options[option])


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("method_class", [FixedLengthCandidateGenerator, DySpecCandidateGenerator])
def test_streamer_receives_the_cut_output(pair, options, method_class, route):
    """A criterion that stops inside a round: the streamer gets the prompt and exactly the tokens returned."""
    from helpers import CollectingStreamer

    target, draft = pair
    streamer = CollectingStreamer()
    if route == "custom_generate":  # transformers hands custom_generate= no streamer: the method holds it
        extra = {route: method_class(5, draft_model=draft, streamer=streamer)}
    else:
        extra = {route: method_class(5), "assistant_model": draft, "streamer": streamer}
    kwargs = dict(max_new_tokens=MAX_NEW_TOKENS, do_sample=False, **options["stop-last-token-early"])
    ids = torch.tensor([PROMPT])
    out = target.generate(ids, **extra, **kwargs)
    assert torch.equal(out, target.generate(ids, **kwargs))
    assert streamer.chunks[0] == PROMPT and sum(streamer.chunks[1:], []) == out[0, len(PROMPT):].tolist()
    assert streamer.ended


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("method_name", ["fixed-k", "dyspec"])
def test_returned_scores_and_cache_follow_the_cut(pair, options, method_name, route):
    """With output_scores, criteria see the target's scores after verification; the cut round's extra scores and
    cache entries go with its extra tokens."""
    target, draft = pair
    kwargs = dict(max_new_tokens=MAX_NEW_TOKENS, do_sample=False, return_dict_in_generate=True, output_scores=True,
                  **options["stop-last-token-early"])
    ids = torch.tensor([PROMPT])
    reference = target.generate(ids, **kwargs)
    extra = {"assistant_model": draft} if route == "candidate_generator" else {}
    out = target.generate(ids, **{route: METHODS[method_name](draft if route == "custom_generate" else None)},
                          **extra, **kwargs)
    assert torch.equal(out.sequences, reference.sequences)
    assert len(out.scores) == len(reference.scores) == reference.sequences.shape[1] - len(PROMPT)
    for got, expected in zip(out.scores, reference.scores):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    assert cache.get_seq_length() == reference.sequences.shape[1] - 1
