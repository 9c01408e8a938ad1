"""Pure parts of the training half: labels, token mixing, loss/metrics and the round simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_specdecpp import RejectionThresholdCriteria
from hf_specdecpp.head import DRAFTED_TOKEN, PRODUCING_STATE
from hf_specdecpp.methods.specdecpp.calibration import choose_threshold, simulate_policy, threshold_round_length
from hf_specdecpp.training import (
    DecodingSettings,
    acceptance_labels,
    mix_tokens,
    rejection_auroc,
    weighted_bce_from_logits,
)

from helpers import scripted_head, scripted_state


def test_greedy_labels_by_hand():
    target = torch.tensor([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0], [2.0, 1.0, 0.0]])
    draft = torch.tensor([[0.0, 4.0, 1.0], [5.0, 0.0, 0.0], [3.0, 0.0, 1.0]])
    y, labels = acceptance_labels(target, draft, DecodingSettings(temperature=0.0))
    assert y.tolist() == [1, 0, 0]
    assert labels.tolist() == [1.0, 0.0, 1.0]


def _hand_probs(logits, temperature, top_k, top_p):
    """Temperature, then top-k, then top-p (smallest set with mass >= top_p), renormalised; plain numpy."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    keep = np.ones_like(z, dtype=bool)
    if top_k:
        keep &= z >= np.sort(z)[-top_k]
    z = np.where(keep, z, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p < 1:
        order = np.argsort(-p)
        cum = np.cumsum(p[order])
        n = int(np.searchsorted(cum, top_p - 1e-12) + 1)
        mask = np.zeros_like(keep)
        mask[order[:n]] = True
        p = np.where(mask, p, 0.0)
        p /= p.sum()
    return p


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 0, 1.0), (0.5, 2, 1.0), (1.3, 0, 0.8)])
def test_sampled_labels_by_hand(temperature, top_k, top_p):
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(64, 6, generator=gen) * 2
    draft = target + torch.randn(64, 6, generator=gen)
    settings = DecodingSettings(temperature=temperature, top_p=top_p, top_k=top_k)
    y, labels = acceptance_labels(target, draft, settings, generator=torch.Generator().manual_seed(1))
    for i in range(64):
        p = _hand_probs(target[i].numpy(), temperature, top_k, top_p)
        q = _hand_probs(draft[i].numpy(), temperature, top_k, top_p)
        yi = int(y[i])
        assert q[yi] > 0, "the draft token must come from the processed draft distribution"
        assert labels[i].item() == pytest.approx(min(1.0, p[yi] / q[yi]), abs=1e-5)


def test_sampled_label_zero_when_target_processing_removes_token():
    # top-k 1: the target keeps only token 0, the draft only token 2.
    target = torch.tensor([[5.0, 0.0, 1.0]])
    draft = torch.tensor([[0.0, 1.0, 5.0]])
    y, labels = acceptance_labels(target, draft, DecodingSettings(temperature=1.0, top_k=1))
    assert y.tolist() == [2] and labels.tolist() == [0.0]


def test_sampled_tokens_follow_processed_draft_distribution():
    draft = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(20000, 1)
    settings = DecodingSettings(temperature=0.5, top_k=2)
    y, _ = acceptance_labels(draft, draft, settings, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(y, minlength=4).float() / len(y)
    expected = _hand_probs([2.0, 1.0, 0.0, -1.0], 0.5, 2, 1.0)
    assert np.allclose(freq.numpy(), expected, atol=0.015)


def test_mix_tokens_marks_only_draft_positions():
    x = torch.arange(100, 1100)
    y = -torch.arange(1, 1001)  # disjoint from x: every position tells which it holds
    z, is_draft = mix_tokens(x, y, 0.3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z[is_draft], y[is_draft])
    assert torch.equal(z[~is_draft], x[~is_draft])
    assert 0.25 < (~is_draft).float().mean().item() < 0.35
    z0, d0 = mix_tokens(x, y, 0.0)
    assert d0.all() and torch.equal(z0, y)
    z1, d1 = mix_tokens(x, y, 1.0)
    assert not d1.any() and torch.equal(z1, x)


def test_weighted_bce_matches_formula_and_is_stable():
    logits = torch.tensor([2.0, -1.0, 0.5, 8.0, -8.0])
    labels = torch.tensor([1.0, 0.0, 0.3, 0.0, 1.0])
    p = torch.sigmoid(logits.double())
    w_a, w_r = 1.0, 6.0
    manual = -(w_a * labels * torch.log(p.clamp_min(1e-300)) + w_r * (1 - labels) * torch.log((1 - p).clamp_min(1e-300)))
    expected = manual.sum() / (w_a * labels + w_r * (1 - labels)).sum()
    got = weighted_bce_from_logits(logits, labels, w_a, w_r)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)
    extreme = weighted_bce_from_logits(torch.tensor([200.0, -200.0]), torch.tensor([0.0, 1.0]), w_a, w_r)
    assert extreme.item() == pytest.approx((6 * 200 + 200) / 7, rel=1e-4)  # finite: logsigmoid, no log(0)


def test_rejection_auroc_hard_and_soft():
    pred = np.array([0.9, 0.8, 0.2, 0.1])
    assert rejection_auroc(pred, np.array([1, 1, 0, 0.0])) == 1.0
    assert rejection_auroc(pred, np.array([0, 0, 1, 1.0])) == 0.0
    assert math.isnan(rejection_auroc(pred, np.ones(4)))


@pytest.mark.parametrize("lagged", [True, False])
@pytest.mark.parametrize("threshold,min_c,max_c", [(0.3, 1, 20), (0.7, 2, 5), (0.05, 1, 3), (0.9, 3, 20)])
def test_simulated_round_length_matches_stopping_criteria(threshold, min_c, max_c, lagged):
    rng = np.random.default_rng(0)
    pred = rng.uniform(0.3, 1.0, size=40)
    for start in range(0, 30, 3):
        limit = min(max_c, len(pred) - start)
        k_sim = threshold_round_length(pred, start, limit, threshold, min_c, lagged=lagged)
        # the drafting loop's decisions (DraftSession.draft_round) with the live stopping rule
        crit = RejectionThresholdCriteria(scripted_head(DRAFTED_TOKEN if lagged else PRODUCING_STATE), threshold)
        crit.start_round(1)
        ids, scores = torch.zeros((1, 1), dtype=torch.long), torch.zeros((1, 4))
        for t in range(1, limit + 1):
            if lagged:  # a drafted-token head: the state at token t-1 comes with drafting token t
                prob = 0.5 if t == 1 else float(pred[start + t - 2])  # (step 0 is never scored)
            else:  # a producing-state head scores token t as soon as it is drafted
                prob = float(pred[start + t - 1])
            stop = bool(crit(ids, scores, hidden_states=scripted_state(prob), step=t - 1)[0]) and t >= min_c
            if stop or t == limit:
                break
        assert k_sim == t


def test_round_length_with_and_without_lag_by_hand():
    pred = np.array([0.5, 0.9, 0.9, 0.9])
    # no lag: after token 1, P(reject) = 0.5 > 0.3 -> one candidate
    assert threshold_round_length(pred, 0, 4, 0.3, 1, lagged=False) == 1
    # lag: token 1 is unscored when deciding after it; after token 2 the product covers token 1 -> two
    assert threshold_round_length(pred, 0, 4, 0.3, 1, lagged=True) == 2
    # from position 1: no lag 1-0.9=0.1, 1-0.81=0.19, 1-0.729=0.271 -> never above 0.3 within the limit of 3
    assert threshold_round_length(pred, 1, 3, 0.3, 1, lagged=False) == 3
    assert threshold_round_length(pred, 1, 3, 0.15, 1, lagged=False) == 2


def test_simulation_counts_tokens_and_costs():
    # One response of 6 positions, accepted pattern 1 1 0 1 1 1; fixed K=2, c=0.1, slope 0.
    acc = [np.array([1, 1, 0, 1, 1, 1], dtype=bool)]
    preds = [np.full(6, 0.5)]
    r = simulate_policy(preds, [acc], c_draft=0.1, verify_slope=0.0, fixed_k=2)
    # rounds: j=0 K=2 n=2 -> 3 tokens; j=3 K=2 n=2 -> 3 tokens (capped to remaining 3); total 6 tokens, 2 rounds
    assert r["tokens_per_round"] == 3.0
    assert r["time_per_token"] == pytest.approx(2 * (2 * 0.1 + 1) / 6)


def test_oracle_simulation_drafts_exactly_the_accepted_runs():
    # Pattern 1 1 0 1 1 1: the oracle drafts 2 (both accepted; the target's token fills the rejected position),
    # then the 3 left (all accepted; the data ends): 2 rounds, 6 tokens.
    acc = [np.array([1, 1, 0, 1, 1, 1], dtype=bool)]
    costs = np.array([1.0, 1.1, 1.2, 1.3])
    r = simulate_policy([np.full(6, 0.5)], [acc], c_draft=0.1, verify_costs=costs, oracle=True, max_candidates=3)
    assert r["tokens_per_round"] == 3.0 and r["mean_candidates"] == 2.5
    assert r["time_per_token"] == pytest.approx(((2 * 0.1 + 1.2) + (3 * 0.1 + 1.3)) / 6)
    # a rejection at the start of a round: the oracle drafts nothing and the target decodes one token
    r0 = simulate_policy([np.full(2, 0.5)], [[np.array([0, 0], dtype=bool)]], c_draft=0.1, verify_costs=costs,
                         oracle=True, max_candidates=3)
    assert r0["mean_candidates"] == 0.0 and r0["time_per_token"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="exactly one of"):
        simulate_policy([np.full(6, 0.5)], [acc], c_draft=0.1, verify_costs=costs, oracle=True, fixed_k=2)
    # runs of 3 and 1 accepted tokens: no fixed K and no threshold on an uninformative head matches the oracle
    mixed = [np.array(([True] * 3 + [False] + [True] + [False]) * 20)]
    best = choose_threshold([np.full(120, 0.8)], [mixed], c_draft=0.1, verify_costs=costs, max_candidates=3)
    assert best["oracle_speedup"] == simulate_policy([np.full(120, 0.8)], [mixed], c_draft=0.1, verify_costs=costs,
                                                     oracle=True, max_candidates=3)["speedup"]
    assert best["oracle_speedup"] > max(best["speedup"], best["fixed_k_speedup"])


def test_verify_cost_table_interpolates_and_extrapolates():
    from hf_specdecpp.core.costs import verify_cost_table

    table = verify_cost_table(6, {"0": 1.0, "2": 1.2, "4": 2.0}, verify_slope=0.5)
    assert table.tolist() == pytest.approx([1.0, 1.1, 1.2, 1.6, 2.0, 2.5, 3.0])
    assert verify_cost_table(3, None, verify_slope=0.1).tolist() == pytest.approx([1.0, 1.1, 1.2, 1.3])


def test_simulation_uses_the_verify_cost_table():
    # Pattern 1 1 0 1 1 1; fixed K=2 costs c*2 + v(2) per round, two rounds for 6 tokens.
    acc = [np.array([1, 1, 0, 1, 1, 1], dtype=bool)]
    costs = np.array([1.0, 1.0, 1.5, 4.0])
    r = simulate_policy([np.full(6, 0.5)], [acc], c_draft=0.1, verify_costs=costs, fixed_k=2, max_candidates=3)
    assert r["time_per_token"] == pytest.approx(2 * (2 * 0.1 + 1.5) / 6)
    with pytest.raises(ValueError, match="covers K <= 3"):
        simulate_policy([np.full(6, 0.5)], [acc], c_draft=0.1, verify_costs=costs, fixed_k=5)


def test_cap_is_chosen_where_verification_cost_steps_up():
    # Runs of 3 accepted tokens then a rejection; a confident head never stops by itself, so K = the cap.
    acc = [np.array(([True] * 3 + [False]) * 25)]
    preds = [np.full(100, 0.99)]
    step = np.array([1.0] * 4 + [3.0] * 17)  # v(K) = 1 for K <= 3, then 3
    r = choose_threshold(preds, [acc], c_draft=0.1, verify_costs=step, thresholds=(0.5,), refine=False,
                         max_candidates=20)
    assert r["max_candidates"] == 3
    assert r["time_per_token"] == pytest.approx((3 * 0.1 + 1.0) / 4)
    assert r["cap_grid"]["20"] > 1.0  # about (20 * 0.1 + 3) / 4 per token (the last round is shorter)
    flat = choose_threshold(preds, [acc], c_draft=0.1, verify_costs=step, thresholds=(0.5,), refine=False,
                            max_candidates=20, search_cap=False)
    assert flat["max_candidates"] == 20 and flat["time_per_token"] > r["time_per_token"]


def test_cap_keeps_the_largest_within_tolerance():
    # Runs of 3 accepted tokens then a rejection; a head that never stops drafts the cap every round.
    # v(K) = 1 up to K = 3, then 1 + 0.01 (K - 3): cap 4 is 1.1% slower than cap 3, cap 20 about 18%.
    acc = [np.array(([True] * 3 + [False]) * 25)]
    preds = [np.full(100, 0.99)]
    costs = np.array([1.0] * 4 + [1.0 + 0.01 * k for k in range(1, 18)])
    kw = dict(c_draft=0.001, verify_costs=costs, thresholds=(0.5,), refine=False, max_candidates=20)
    tight = choose_threshold(preds, [acc], cap_tolerance=0.0, **kw)
    loose = choose_threshold(preds, [acc], cap_tolerance=0.015, **kw)
    grid = tight["cap_grid"]
    assert tight["max_candidates"] == 3 and grid["3"] == min(grid.values())
    assert grid["3"] < grid["4"] <= grid["3"] * 1.015 < grid["5"]
    assert loose["max_candidates"] == 4 and loose["cap_tolerance"] == 0.015
