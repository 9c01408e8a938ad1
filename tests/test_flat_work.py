"""Per-round work that does not grow with the sequence, counted (never timed): a batch's cache is not re-aligned
every round (rejected columns stay as masked holes, compacted lazily), the tree compacts its caches over the
accepted path only, and greedy drafting keeps no vocabulary-sized scores nor every layer's hidden states."""

from __future__ import annotations

import pytest
import torch

import hf_specdecpp.core.cache as cache_module
import hf_specdecpp.core.drafting as session_module
from hf_specdecpp import FixedLengthCandidateGenerator, SpecDecPPCandidateGenerator
from hf_specdecpp.core.drafting import DraftSession
from hf_specdecpp.testing import tiny_pair

from helpers import producing_head

ROWS = [[5, 9, 13, 2, 7], [4, 8, 15, 16, 23, 42, 11, 12, 13], [3, 3], [17, 18, 19, 20]]


@pytest.fixture(scope="module")
def pair():
    return tiny_pair("llama", noise=0.3, seed=3)  # rows accept different numbers of candidates every round


def batch_inputs():
    width = max(map(len, ROWS))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in ROWS])
    return ids, (ids != 0).long()


def test_a_batch_is_compacted_rarely_not_every_round(pair, monkeypatch):
    target, draft = pair
    gathers = []
    realign = cache_module.realign
    monkeypatch.setattr(session_module, "realign", lambda *a, **k: (gathers.append(1), realign(*a, **k))[1])
    monkeypatch.setattr(cache_module, "realign", lambda *a, **k: (gathers.append(1), realign(*a, **k))[1])
    ids, mask = batch_inputs()
    method = FixedLengthCandidateGenerator(4, draft_model=draft)
    out = target.generate(ids, attention_mask=mask, custom_generate=method, max_new_tokens=96, do_sample=False,
                          eos_token_id=None, pad_token_id=0)
    rounds = method.stats.rounds
    assert rounds > 30
    assert len(gathers) <= 8, (len(gathers), rounds)  # a whole-cache gather now and then, not once per round
    for i, row in enumerate(ROWS):  # and the output is still each row's own
        alone = target.generate(torch.tensor([row]), max_new_tokens=96, do_sample=False, eos_token_id=None,
                                pad_token_id=0)
        assert out[i, ids.shape[1]:].tolist() == alone[0, len(row):].tolist()


def test_greedy_drafting_keeps_no_scores_and_no_layer_states(pair, monkeypatch):
    target, draft = pair
    kept, requested = [], []
    draft_round = DraftSession.draft_round
    monkeypatch.setattr(DraftSession, "draft_round",
                        lambda self, *a, **k: (lambda r: (kept.append(r.scores is not None), r)[1])(
                            draft_round(self, *a, **k)))
    forward = type(draft).forward
    monkeypatch.setattr(type(draft), "forward",
                        lambda self, *a, **k: (requested.append(bool(k.get("output_hidden_states"))),
                                               forward(self, *a, **k))[1])
    ids, mask = batch_inputs()
    method = SpecDecPPCandidateGenerator(head=producing_head(32), threshold=0.5, draft_model=draft)
    target.generate(ids, attention_mask=mask, custom_generate=method, max_new_tokens=12, do_sample=False,
                    pad_token_id=0)
    assert kept and not any(kept)  # sampling needs the draft's scores; greedy verification does not
    assert requested and not any(requested)  # the head's state comes from the output layer's input
