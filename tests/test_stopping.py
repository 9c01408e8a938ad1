"""The SpecDec++ stopping rule on hand-computed cases: product, one-step lag, per-row decisions.

The head is scripted: no residual blocks and a classifier that reads the first hidden component, so a hidden
state of logit(p) makes it predict p. (Bounds on candidates and EOS are the drafting loop's; they are tested
through generate() in test_generation_greedy.py and test_benchmark.py.)
"""

import pytest
import torch

from hf_specdecpp import AcceptanceHead, RejectionThresholdCriteria
from hf_specdecpp.head import PRODUCING_STATE

from helpers import scripted_head
from helpers import scripted_state as state

IDS = torch.zeros((1, 4), dtype=torch.long)
SCORES = torch.zeros((1, 5))


def run_round(criteria, probabilities):
    """One round of a drafted-token (lagged) head: at step t the hidden state is the one AT token t (step 0: the
    verified token, whose state is not scored). Returns the stop decisions until the first stop."""
    criteria.start_round(1)
    decisions = []
    for step in range(len(probabilities) + 1):
        hidden = state(probabilities[step - 1] if step else 0.5)
        decisions.append(bool(criteria(IDS, SCORES, hidden_states=hidden, step=step)))
        if decisions[-1]:
            break
    return decisions


def test_first_step_counts_as_accepted():
    criteria = RejectionThresholdCriteria(scripted_head(), threshold=0.01)
    criteria.start_round(1)
    assert not bool(criteria(IDS, SCORES, hidden_states=state(0.001), step=0))  # the verified token: not scored
    assert criteria.rejection_probability() is None


def test_product_and_threshold_hand_computed():
    # threshold 0.5: after token 2 the product is 0.9 (rej 0.1); after token 3: 0.9*0.8=0.72 (rej 0.28);
    # after token 4: 0.72*0.6=0.432 (rej 0.568 > 0.5) -> stop with 4 candidates drafted.
    criteria = RejectionThresholdCriteria(scripted_head(), threshold=0.5)
    decisions = run_round(criteria, [0.9, 0.8, 0.6, 0.99])
    assert decisions == [False, False, False, True]
    assert float(criteria.rejection_probability()) == pytest.approx(1 - 0.9 * 0.8 * 0.6, abs=1e-6)


def test_threshold_is_strict_inequality():
    criteria = RejectionThresholdCriteria(scripted_head(), threshold=0.5)
    # rej after token 2 = 0.5 (not > 0.5), after token 3 = 0.75 -> stop at 3 candidates.
    assert run_round(criteria, [0.5, 0.5]) == [False, False, True]


def test_producing_state_head_scores_the_first_token():
    criteria = RejectionThresholdCriteria(scripted_head(PRODUCING_STATE), threshold=0.3)
    criteria.start_round(1)
    assert bool(criteria(IDS, SCORES, hidden_states=state(0.5), step=0))  # no lag: one token can end a round
    criteria.start_round(1)
    assert not bool(criteria(IDS, SCORES, hidden_states=state(0.9), step=0))
    assert float(criteria.rejection_probability()) == pytest.approx(0.1, abs=1e-6)


def test_start_round_resets_product():
    criteria = RejectionThresholdCriteria(scripted_head(), threshold=0.5)
    run_round(criteria, [0.1])
    criteria.start_round(1)
    assert criteria.rejection_probability() is None
    assert run_round(criteria, [0.9, 0.9]) == [False, False, False]


def test_rows_decide_independently():
    criteria = RejectionThresholdCriteria(scripted_head(), threshold=0.5)
    ids = torch.zeros((3, 2), dtype=torch.long)
    criteria.start_round(3)
    first = criteria(ids, SCORES.expand(3, -1), hidden_states=state(0.5, 0.5, 0.5), step=0)
    assert first.shape == (3,) and first.dtype == torch.bool and not bool(first.any())
    second = criteria(ids, SCORES.expand(3, -1), hidden_states=state(0.9, 0.3, 0.6), step=1)
    assert second.tolist() == [False, True, False]  # rejection 0.1, 0.7, 0.4


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.2, 1.5, "0.5", None])
def test_bad_thresholds(threshold):
    with pytest.raises(ValueError, match="threshold"):
        RejectionThresholdCriteria(scripted_head(), threshold=threshold)
