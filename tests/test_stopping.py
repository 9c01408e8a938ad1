"""The SpecDec++ stopping rule on hand-computed cases: product, one-step lag, bounds."""

import pytest
import torch

from hf_specdecpp import RejectionThresholdCriteria

IDS = torch.zeros((1, 4), dtype=torch.long)


def run_round(criteria, probabilities):
    """Feed one round: step 0 gets None (verified token), step t gets the head's prediction for token t."""
    criteria.start_round()
    decisions = []
    for step in range(len(probabilities) + 1):
        acceptance = None if step == 0 else torch.tensor([probabilities[step - 1]])
        decisions.append(bool(criteria(IDS, None, acceptance_prob=acceptance)))
        if decisions[-1]:
            break
    return decisions


def test_first_step_counts_as_accepted():
    criteria = RejectionThresholdCriteria(threshold=0.01, min_candidates=1, max_candidates=10)
    criteria.start_round()
    assert not bool(criteria(IDS, None, acceptance_prob=None))
    assert criteria.rejection_probability() == 0.0


def test_product_and_threshold_hand_computed():
    # threshold 0.5: after token 2 the product is 0.9 (rej 0.1); after token 3: 0.9*0.8=0.72 (rej 0.28);
    # after token 4: 0.72*0.6=0.432 (rej 0.568 > 0.5) -> stop with 4 candidates drafted.
    criteria = RejectionThresholdCriteria(threshold=0.5, min_candidates=1, max_candidates=10)
    decisions = run_round(criteria, [0.9, 0.8, 0.6, 0.99])
    assert decisions == [False, False, False, True]
    assert criteria.num_drafted == 4
    assert float(criteria.rejection_probability()) == pytest.approx(1 - 0.9 * 0.8 * 0.6)


def test_threshold_is_strict_inequality():
    criteria = RejectionThresholdCriteria(threshold=0.5, min_candidates=1, max_candidates=10)
    decisions = run_round(criteria, [0.5, 0.5])
    # rej after token 2 = 0.5 (not > 0.5), after token 3 = 0.75 -> stop at 3 candidates.
    assert decisions == [False, False, True]


def test_min_candidates_delays_stop():
    criteria = RejectionThresholdCriteria(threshold=0.1, min_candidates=4, max_candidates=10)
    decisions = run_round(criteria, [0.01, 0.01, 0.01, 0.01])
    assert decisions == [False, False, False, True]


def test_max_candidates_forces_stop():
    criteria = RejectionThresholdCriteria(threshold=0.9, min_candidates=1, max_candidates=3)
    decisions = run_round(criteria, [1.0, 1.0, 1.0, 1.0])
    assert decisions == [False, False, True]


def test_start_round_resets_product():
    criteria = RejectionThresholdCriteria(threshold=0.5, min_candidates=1, max_candidates=10)
    run_round(criteria, [0.1])
    criteria.start_round()
    assert criteria.num_drafted == 0
    assert criteria.rejection_probability() == 0.0


def test_batch_shaped_output():
    criteria = RejectionThresholdCriteria(threshold=0.5)
    ids = torch.zeros((3, 2), dtype=torch.long)
    out = criteria(ids, None)
    assert out.shape == (3,) and out.dtype == torch.bool


@pytest.mark.parametrize(
    "kwargs",
    [dict(threshold=0.0), dict(threshold=1.0), dict(threshold=-0.2), dict(threshold=1.5),
     dict(threshold=0.5, min_candidates=5, max_candidates=3), dict(threshold=0.5, min_candidates=0)],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        RejectionThresholdCriteria(**kwargs)
