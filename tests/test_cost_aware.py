"""The cost-aware stop rule (`core.cost_aware`, `stop_rule="cost-aware"`): it adapts the round length to what
the call's verifications show and to the machine's costs, and never changes the output."""

from __future__ import annotations

import functools

import pytest
import torch

from hf_specdecpp import EntropyMethod, SpecDecPPMethod
from hf_specdecpp.core.cost_aware import CostAwareStop, OnlineSettings, calibration_fit, fixed_k_rate, marginal_costs
from hf_specdecpp.methods.specdecpp.estimator import head_calibration
from hf_specdecpp.testing import tiny_pair

from helpers import producing_head, random_head

CPU_LIKE = (0.4, [1.0, 0.95, 0.95, 0.95, 0.98] + [1.0 + 0.03 * k for k in range(1, 17)])
GPU_LIKE = (0.1, [1.0 + 0.01 * k for k in range(21)])


def simulated_rounds(raw: float, accept: bool, costs=CPU_LIKE, rounds: int = 30, cap: int = 20,
                     lagged: bool = False) -> list[int]:
    """Round lengths of the rule when every prediction is `raw` and the target accepts every candidate
    (`accept`) or rejects the first one."""
    rule = CostAwareStop(None, lagged, costs[0], costs[1], cap, needs_hidden_states=False)
    lengths = []
    for _ in range(rounds):
        rule.start_round(1)
        drafted = cap
        for step in range(cap):
            acceptance = None if lagged and step == 0 else torch.tensor([raw])
            if bool(rule.observe(acceptance, step, torch.device("cpu"))[0]):
                drafted = step + 1
                break
        lengths.append(drafted)
        rule.end_round([drafted], [drafted if accept else 0])
    return lengths


@pytest.mark.parametrize("lagged", [False, True])
def test_rounds_grow_on_high_acceptance_and_shrink_on_low(lagged):
    """The same raw predictions (0.8 per token): where the target accepts everything the rule learns to draft
    longer rounds; where it rejects the first candidate every time, it learns to draft the fewest it can (one
    token, or two with a lagged head that cannot stop before it has scored one)."""
    high = simulated_rounds(0.8, True, lagged=lagged, rounds=60)
    low = simulated_rounds(0.8, False, lagged=lagged, rounds=60)
    assert high[0] == low[0] and 1 < high[0] < 20  # nothing learnt yet: the same first round
    assert min(high[-10:]) >= 2 * high[0]
    assert low[-10:] == [2 if lagged else 1] * 10 and low[-1] < low[0]


def test_cheaper_drafts_draft_longer():
    """The same predictions under a GPU-like curve (cheap draft, flat verification) draft longer rounds than under
    a CPU-like one: the rule reads the machine's costs."""
    cpu = simulated_rounds(0.8, True, CPU_LIKE, rounds=1)
    gpu = simulated_rounds(0.8, True, GPU_LIKE, rounds=1)
    assert gpu[0] > cpu[0]


def test_the_prior_rate_of_a_rule_without_a_policy():
    # free drafts, flat verification: the longest K wins, (1 - a^(K+1)) / (1 - a) tokens per target step
    assert fixed_k_rate(0.0, [1.0, 1.0], 3, acceptance=0.5) == pytest.approx(1.875)
    # K = 1 costs 1.5 for 1.5 tokens, K = 2 costs 2.0 for 1.75: K = 1's rate 1.0 is the best
    assert fixed_k_rate(0.5, [1.0, 1.0], 2, acceptance=0.5) == pytest.approx(1.0)
    assert fixed_k_rate(0.1, [1.0, 1.01], 20) > fixed_k_rate(0.4, [1.0, 1.01], 20)  # cheaper drafts, higher rate


def test_the_calibration_starts_from_the_dev_traces_fit():
    p = torch.linspace(0.05, 0.95, 400)
    truth = torch.sigmoid(2.0 * torch.logit(p) + 0.5)  # soft labels from a known miscalibration
    scale, bias = calibration_fit(p, truth)
    assert scale == pytest.approx(2.0, abs=1e-3) and bias == pytest.approx(0.5, abs=1e-3)
    assert head_calibration(producing_head(32)) == (1.0, 0.0)  # no traces: uncalibrated start
    rule = CostAwareStop(None, False, 0.3, [1.0, 1.0], 4, False, OnlineSettings(prior_scale=scale, prior_bias=bias))
    rule.start_round(1)
    rule.observe(torch.tensor([0.5]), 0, torch.device("cpu"))
    assert rule.scale.item() == pytest.approx(2.0, abs=1e-3) and rule.bias.item() == pytest.approx(0.5, abs=1e-3)


def test_marginal_costs_extend_the_table():
    assert marginal_costs(0.5, [1.0, 1.0, 1.5], 4) == [0.5, 1.0, 1.0, 1.0]
    assert marginal_costs(0.2, [1.0, 0.9], 2) == [0.2, 0.2]  # a falling v never makes a token free


@pytest.fixture(scope="module")
def pair():
    return tiny_pair("llama", noise=0.03, seed=1)


@pytest.mark.parametrize("route", ["candidate_generator", "custom_generate"])
@pytest.mark.parametrize("estimate", ["lagged head", "producing head", "specdec++ top-1", "top-1", "entropy"])
def test_greedy_output_is_the_targets(pair, route, estimate):
    target, draft = pair
    own_draft = draft if route == "custom_generate" else None
    if estimate.endswith("head"):
        head = random_head(32, seed=3) if estimate == "lagged head" else producing_head(32)
        method = SpecDecPPMethod(head=head, stop_rule="cost-aware", max_candidates=8, draft_model=own_draft)
    elif estimate == "specdec++ top-1":  # the default for a head whose dev traces favour the draft's confidence
        method = SpecDecPPMethod(head=producing_head(32), estimator="top1", max_candidates=8, draft_model=own_draft)
    else:  # training-free, with measured-looking costs
        method = EntropyMethod(estimator="top1" if estimate == "top-1" else "entropy", stop_rule="cost-aware",
                               max_candidates=8, cost_ratio=0.4, verify_costs=(1.0, 1.05, 1.1, 1.2),
                               draft_model=own_draft)
    ids = torch.tensor([[0, 0, 2, 5, 6, 7], [3, 17, 4, 40, 41, 42]])
    mask = (ids != 0).long()
    batch = slice(None) if route == "custom_generate" else slice(1, 2)
    kwargs = dict(input_ids=ids[batch], attention_mask=mask[batch], max_new_tokens=40, do_sample=False,
                  eos_token_id=None, pad_token_id=0)
    expected = target.generate(**kwargs)
    extra = {"assistant_model": draft, "candidate_generator": method} if route == "candidate_generator" \
        else {"custom_generate": method}
    out = target.generate(**kwargs, **extra, return_dict_in_generate=True)
    assert torch.equal(out.sequences, expected)
    assert out.speculation_stats.rounds < 40  # it speculated


def test_threshold_is_unused_and_the_rule_is_checked():
    head = producing_head(32)
    with pytest.raises(ValueError, match="stop_rule"):
        SpecDecPPMethod(head=head, stop_rule="bandit")
    method = functools.partial(SpecDecPPMethod, head=head, stop_rule="cost-aware")
    assert method().config.stop_rule == "cost-aware"


def test_the_default_rule_is_the_cost_aware_one_unless_a_threshold_is_given():
    head = producing_head(32)
    assert SpecDecPPMethod(head=head).config.stop_rule == "cost-aware"  # issue 26: the adaptive rule
    assert SpecDecPPMethod(head=head, threshold=0.3).config.stop_rule == "threshold"  # a threshold means its rule
    with pytest.raises(ValueError, match="estimator"):
        SpecDecPPMethod(head=head, threshold=0.3, estimator="top1")
    with pytest.raises(ValueError, match="estimator"):
        SpecDecPPMethod(head=head, estimator="entropy")


def _head_with_traces(head_better: bool):
    """A head whose dev traces make its own predictions (or the draft's top-1 probability) the sharper ones."""
    generator = torch.Generator().manual_seed(0)
    labels = (torch.rand(2000, generator=generator) < 0.7).float()
    sharp = torch.where(labels > 0, 0.9, 0.3) + 0.05 * torch.rand(2000, generator=generator)
    vague = torch.full((2000,), 0.7) + 0.1 * torch.rand(2000, generator=generator)
    head_pred, top1 = (sharp, vague) if head_better else (vague, sharp)
    features = torch.stack([top1.log(), top1.log(), torch.zeros(2000)], dim=-1)
    head = producing_head(32)
    head.traces = {"pred": head_pred, "label": labels, "features": features}
    return head


@pytest.mark.parametrize("head_better", [True, False])
def test_the_estimator_is_the_one_that_predicts_the_dev_traces_better(head_better):
    head = _head_with_traces(head_better)
    choice = SpecDecPPMethod(head=head).estimator_choice
    assert choice.name == ("head" if head_better else "top1")
    losses = dict(choice.dev_log_loss)
    assert (losses["head"] < losses["top1"]) == head_better
    assert choice.calibration == (head_calibration(head) if head_better else (1.0, 0.0))
    assert SpecDecPPMethod(head=head, estimator="head").estimator_choice.name == "head"  # overrides
    assert SpecDecPPMethod(head=head, estimator="top1").estimator_choice.name == "top1"
    assert SpecDecPPMethod(head=producing_head(32)).estimator_choice.name == "head"  # no traces: the head


def test_training_free_costs_are_checked_and_assumed_where_not_given():
    with pytest.raises(ValueError, match="verify_costs"):
        EntropyMethod(stop_rule="cost-aware", verify_costs=[1.0])
    with pytest.raises(ValueError, match=r"verify_costs\[1\]"):
        EntropyMethod(stop_rule="cost-aware", verify_costs=[1.0, -2.0])
    with pytest.raises(ValueError, match="cost_ratio"):
        EntropyMethod(stop_rule="cost-aware", cost_ratio=0.0)
    c, v = EntropyMethod(stop_rule="cost-aware", max_candidates=4).config.costs()
    assert c == 0.3 and v == pytest.approx((1.0, 1.02, 1.04, 1.06, 1.08))
    assert EntropyMethod(verify_costs=[1, 2]).config.verify_costs == (1.0, 2.0)  # a JSON list reads as a tuple
