"""Producing-state acceptance heads: each drafted token is scored from the state that drafted it (no lag)."""

import math

import pytest
import torch

import hf_specdecpp  # noqa: F401  (installs candidate_generator=)
from hf_specdecpp import AcceptanceHead, DySpecCandidateGenerator, SpecDecPPCandidateGenerator
from hf_specdecpp.head import CONFIDENCE_FEATURES, PRODUCING_STATE, confidence_features
from hf_specdecpp.methods.dyspec.growth import child_estimates
from hf_specdecpp.testing import tiny_pair

from helpers import constant_head, producing_head

PROMPTS = [[2, 5, 6, 7, 8, 9], [3, 17, 4, 40, 41, 42, 43, 12, 13, 14, 15]]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def pair(request):
    return tiny_pair(request.param, noise=0.02, seed=1)


# ---------------------------------------------------------------------------------------------- the head
def test_confidence_features_by_hand():
    scores = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2), -math.inf]])
    f = confidence_features(scores, torch.tensor([1]))[0]
    entropy = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2))
    assert len(CONFIDENCE_FEATURES) == 3
    assert f.tolist() == pytest.approx([math.log(0.3), math.log(0.5), entropy], abs=1e-6)


def test_config_round_trip_and_errors(tmp_path):
    head = producing_head(32)
    head.save_pretrained(tmp_path)
    loaded = AcceptanceHead.from_pretrained(str(tmp_path))
    assert loaded.input_state == PRODUCING_STATE and loaded.use_confidence_features and loaded.scores_without_lag
    torch.testing.assert_close(loaded.feature_classifier.weight, head.feature_classifier.weight)
    hidden, feats = torch.randn(5, 32), torch.randn(5, 3)
    torch.testing.assert_close(loaded(hidden, feats), head(hidden, feats))
    with pytest.raises(ValueError, match="pass `features=`"):
        head(hidden)
    with pytest.raises(ValueError, match="needs input_state 'producing_state'"):
        AcceptanceHead(32, use_confidence_features=True)
    with pytest.raises(ValueError, match="input_state` must be one of"):
        AcceptanceHead(32, input_state="somewhere")
    assert not AcceptanceHead(32).scores_without_lag  # the reference layout stays the default


# ---------------------------------------------------------------------------------------------- chains
@pytest.mark.parametrize("threshold", [0.1, 0.4, 0.8])
@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("route", ["candidate_generator", "custom_generate"])
def test_greedy_equals_target(pair, threshold, prompt, route):
    target, draft = pair
    ids = torch.tensor([prompt])
    reference = target.generate(ids, max_new_tokens=30, do_sample=False)
    generator = SpecDecPPCandidateGenerator(head=producing_head(32), threshold=threshold, max_candidates=8,
                                            draft_model=draft)
    kwargs = {"assistant_model": draft} if route == "candidate_generator" else {}
    out = target.generate(ids, **{route: generator}, **kwargs, max_new_tokens=30, do_sample=False)
    assert torch.equal(out, reference)
    stats = generator.stats
    assert stats.accepted_tokens + stats.rounds == stats.new_tokens == out.shape[1] - ids.shape[1]
    assert stats.drafted_tokens == sum(stats.candidate_lengths) == stats.draft_forwards


def test_no_lag_allows_one_candidate_rounds(pair):
    """A head predicting rejection stops after ONE token; the reference head needs two (its lag)."""
    target, draft = pair
    ids = torch.tensor([PROMPTS[1]])
    reference = target.generate(ids, max_new_tokens=24, do_sample=False)
    lengths = {}
    for name, head in (("producing", producing_head(32, probability=1e-6)), ("drafted", constant_head(32, 1e-6))):
        gen = SpecDecPPCandidateGenerator(head=head, threshold=0.5, max_candidates=8)
        out = target.generate(ids, assistant_model=draft, candidate_generator=gen, max_new_tokens=24, do_sample=False)
        assert torch.equal(out, reference)
        lengths[name] = set(gen.stats.candidate_lengths)
    # (a round of 0 candidates can only occur at the length limit)
    assert lengths["producing"] - {0} == {1}
    assert max(lengths["drafted"]) == 2 and 2 in lengths["drafted"]


def test_head_reads_the_state_and_scores_that_drafted_the_token(pair):
    target, draft = pair
    head = producing_head(32)
    calls = []
    original = head.predict_drafted

    def record(hidden, scores, tokens):
        calls.append((hidden.clone(), scores.clone(), tokens.clone()))
        return original(hidden, scores, tokens)

    head.predict_drafted = record
    gen = SpecDecPPCandidateGenerator(head=head, threshold=0.6, max_candidates=6)
    out = target.generate(torch.tensor([PROMPTS[0]]), assistant_model=draft, candidate_generator=gen,
                          max_new_tokens=12, do_sample=False)
    assert calls
    for hidden, scores, tokens in calls:
        assert int(scores.argmax(-1)) == int(tokens[0])  # the token is the argmax of the scores it is scored with
    with torch.no_grad():
        full = draft(out, output_hidden_states=True).hidden_states[-1][0]
    # the first call of the first round scores token 1 from the state at the prompt's last token
    torch.testing.assert_close(calls[0][0][0], full[len(PROMPTS[0]) - 1], atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- trees
def test_tree_child_value_uses_the_parents_prediction():
    probs = torch.tensor([[0.6, 0.3, 0.1]])
    child_probs = probs.clone()
    one = torch.ones(1)
    reach, own, value = child_estimates(one, one, one, probs, child_probs, do_sample=False,
                                        first_own=torch.tensor([0.9]))
    assert value[0, 0].item() == pytest.approx(0.9, rel=1e-5)  # the head, not q = 0.6
    # the rejected mass 0.1 is shared by draft probability among the later children
    assert value[0, 1].item() == pytest.approx(0.1 * 0.3 / 0.4, rel=1e-5)
    assert value[0, 2].item() == pytest.approx(0.1 * 0.1 / 0.4, rel=1e-5)


@pytest.mark.parametrize("budget", [2, 6])
def test_tree_greedy_equals_target(pair, budget):
    target, draft = pair
    ids = torch.tensor([PROMPTS[0]])
    reference = target.generate(ids, max_new_tokens=24, do_sample=False)
    head = producing_head(32)
    scored = []
    original = head.predict_drafted
    head.predict_drafted = lambda hidden, scores, tokens: scored.append(tokens.shape[0]) or original(hidden, scores,
                                                                                                      tokens)
    gen = DySpecCandidateGenerator(budget=budget, head=head)
    out = target.generate(ids, assistant_model=draft, candidate_generator=gen, max_new_tokens=24, do_sample=False)
    assert torch.equal(out, reference)
    # every draft pass (one per tree level, the root's included: no lag) scored the first child of each node it read
    assert len(scored) == gen.stats.draft_forwards and all(n >= 1 for n in scored)
