"""RequestDrafter (the engine-side batch drafter behind the vLLM proposers) against the draft's own greedy
continuation, with a simulated engine: rows reorder, drafts are partly accepted, requests finish and arrive.
Needs no vLLM."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from hf_specdecpp.core.pair import VocabMap
from hf_specdecpp.integration.request_drafter import RequestDrafter, common_prefix, right_aligned
from hf_specdecpp.integration.vllm_proposer import ENV_VAR, ProposerSettings, StepTimes
from hf_specdecpp.testing import tiny_pair


class EveryThirdId:
    """A stop rule with per-row decisions: stop after drafting an id divisible by 3."""

    needs_hidden_states = False

    def start_round(self, batch_size):
        pass

    def __call__(self, input_ids, scores, *, hidden_states=None, step=0):
        return input_ids[:, -1] % 3 == 0


@pytest.fixture(scope="module")
def draft():
    return tiny_pair("llama", hidden_size=32, seed=3)[1]


def greedy(draft, context, n):
    """The draft's greedy continuation of `context` by `n` ids, without a cache."""
    ids = torch.tensor(np.asarray(context))[None]
    out = []
    with torch.no_grad():
        for _ in range(n):
            out.append(int(draft(ids).logits[0, -1].argmax()))
            ids = torch.cat([ids, torch.tensor([[out[-1]]])], dim=1)
    return out


def new_request(rng):
    return [rng.randrange(6, 96) for _ in range(rng.randint(2, 9))]


def test_drafts_equal_the_drafts_own_continuation_as_requests_come_and_go(draft):
    rng = random.Random(0)
    drafter = RequestDrafter(draft, EveryThirdId(), VocabMap(96, 96), eos_token_ids=[1])
    requests = {k: new_request(rng) for k in range(4)}
    lengths_seen, next_id = set(), 4
    for step in range(24):
        order = list(requests)
        rng.shuffle(order)  # the engine's rows may move between steps
        contexts = [np.array(requests[k]) for k in order] + [None]  # a row without a draft this step
        caps = [rng.randint(1, 5) for _ in order] + [4]
        drafts = drafter.propose(contexts, caps)
        assert drafts[-1] == []
        for k, context, cap, drafted in zip(order, contexts, caps, drafts):
            assert 1 <= len(drafted) <= cap
            assert drafted == greedy(draft, context, len(drafted)), (step, k)
            accepted = rng.randint(0, len(drafted))
            requests[k] = requests[k] + drafted[:accepted] + [rng.randrange(6, 96)]
        lengths_seen.add(tuple(sorted({len(d) for d in drafts[:-1]})))
        assert drafter.num_requests == len(order)
        if step % 4 == 3:  # one request finishes, another arrives
            del requests[order[0]]
            requests[next_id] = new_request(rng)
            next_id += 1
    assert any(len(lengths) > 1 for lengths in lengths_seen)


def test_one_batched_forward_per_drafted_position(draft):
    drafter = RequestDrafter(draft, EveryThirdId(), VocabMap(96, 96))
    contexts = [np.array([7, 8, 9, 10]), np.array([11, 12])]
    first = [len(d) for d in drafter.propose(contexts, [4, 4])]
    assert drafter.forwards == 1 + max(first)  # one prefill pass for both arrivals, one pass per drafted position
    grown = [np.append(c, 5) for c in contexts]
    before = drafter.forwards
    second = [len(d) for d in drafter.propose(grown, [4, 4])]
    assert drafter.forwards - before == max(second)  # no prefill again: both rows are held


def test_identical_requests_share_nothing_but_stay_exact(draft):
    drafter = RequestDrafter(draft, EveryThirdId(), VocabMap(96, 96))
    context = np.array([9, 19, 29])
    first = drafter.propose([context, context], [3, 3])
    assert first[0] == first[1] == greedy(draft, context, len(first[0]))
    grown = [np.append(context, [first[0][0], 50]), np.append(context, [60])]
    second = drafter.propose(grown, [3, 3])
    assert [second[b] == greedy(draft, grown[b], len(second[b])) for b in range(2)] == [True, True]


def test_helpers():
    assert common_prefix(np.array([1, 2, 3]), np.array([1, 2, 4, 5])) == 2
    assert common_prefix(np.array([1, 2]), np.array([1, 2, 3])) == 2
    assert right_aligned([np.array([1, 2]), np.array([3])]).tolist() == [[1, 2], [0, 3]]


def test_settings_come_from_the_environment():
    settings = ProposerSettings.from_env({ENV_VAR: json.dumps({"draft": "some/draft", "threshold": 0.4})})
    assert (settings.draft, settings.threshold, settings.recalibrate) == ("some/draft", 0.4, "online")
    assert ProposerSettings.from_env({}) == ProposerSettings()
    with pytest.raises(ValueError, match="unknown keys \\['drfat'\\]"):
        ProposerSettings.from_env({ENV_VAR: '{"drfat": "x"}'})
    with pytest.raises(ValueError, match="recalibrate"):
        ProposerSettings.from_env({ENV_VAR: '{"recalibrate": "sometimes"}'})


def test_step_times_fit_the_verification_cost():
    times = StepTimes()
    for k, seconds in [(1, 0.11), (1, 0.11), (1, 0.11), (3, 0.13), (3, 0.13), (3, 0.13)]:
        times.verify.setdefault(k, []).append(seconds)
    times.draft.append(0.05)
    curve = times.curve(max_k=4)
    assert curve.target_step_s == pytest.approx(0.10)
    assert curve.verify_s[4] == pytest.approx(0.14)
    assert curve.c_draft == pytest.approx(0.5)
    assert StepTimes().curve(4) is None


def test_step_times_skip_steps_where_requests_came_or_went():
    times = StepTimes()
    times.end(times.begin(), 2, 2, changed=True)  # an arrival: its gap and prefill do not count
    times.end(times.begin(), 3, 3, changed=False)
    times.end(times.begin(), 1, 1, changed=True)
    times.end(times.begin(), 1, 1, changed=False)
    assert {k: len(v) for k, v in times.verify.items()} == {2: 1, 1: 1} and len(times.draft) == 2
