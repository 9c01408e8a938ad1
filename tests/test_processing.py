"""Logits processors at drafted positions: per batch row and on the scores' device (`core/processing.py`).

Generation-level checks (every processor, left-padded batches, both routes) are in test_equivalence_matrix.py;
these look at the two things it cannot see on one CPU: a processor's per-row state and the device of the ids.
"""

from __future__ import annotations

import pytest
import torch
from transformers import (LogitsProcessorList, MinNewTokensLengthLogitsProcessor, PrefixConstrainedLogitsProcessor,
                          RepetitionPenaltyLogitsProcessor)

from hf_specdecpp.core.processing import RowPrefix, process_next, process_positions, processors_for_row


def batch_penalty(penalty: float, padding: list[int]) -> RepetitionPenaltyLogitsProcessor:
    """The repetition penalty generate() builds for a left-padded batch (per-row padding: transformers >= 5.16)."""
    try:
        return RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=torch.tensor(padding))
    except ValueError:
        pytest.skip("this transformers release has no per-row prompt_ignore_length")


def test_row_processors_get_their_rows_share_of_batch_state():
    penalty = batch_penalty(1.5, [2, 0, 5])
    seen = []
    prefix = PrefixConstrainedLogitsProcessor(lambda batch_id, ids: seen.append(batch_id) or [3], num_beams=1)
    processors = LogitsProcessorList([penalty, prefix])
    row = processors_for_row(processors, 2)
    assert row[0] is not penalty and row[0].prompt_ignore_length.tolist() == [5]
    assert penalty.prompt_ignore_length.tolist() == [2, 0, 5]  # the call's own processor is left as it was
    row[1](torch.tensor([[4, 4]]), torch.zeros((1, 6)))
    assert seen == [2]  # prefix_allowed_tokens_fn is asked about batch row 2, not 0
    plain = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.5)])
    assert processors_for_row(plain, 1) is plain  # nothing per row: the same list


def test_repetition_penalty_of_a_left_padded_row_ignores_its_padding():
    """Row 1 of a batch padded by 2: the pad token (0) is not penalised, its real tokens are."""
    penalty = batch_penalty(2.0, [0, 2])
    processors = LogitsProcessorList([penalty])
    logits = torch.ones((1, 2, 6))
    prefix = RowPrefix(torch.tensor([0, 0, 4, 5]), processors_for_row(processors, 1))
    scores = process_positions(processors, [prefix], torch.tensor([[3]]), logits)
    assert scores[0, 0].tolist() == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    assert scores[0, 1].tolist() == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]  # after the candidate 3


def test_ids_follow_the_scores_device():
    """A draft on another device than the target: the rows' ids (on the target's device) meet the draft's tokens
    and scores on the draft's. The `meta` device stands in for a second accelerator on a CPU-only machine: it
    checks that every tensor a processor reads is moved to the scores' device, not the numbers (a real second
    device is exercised by the GPU check only)."""
    processors = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.3, prompt_ignore_length=1),
                                      MinNewTokensLengthLogitsProcessor(3, 4, 1)])
    prefix = RowPrefix(torch.tensor([0, 4, 5]), processors_for_row(processors, 0))  # the target's device (CPU)
    drafted = torch.tensor([[7, 8]], device="meta")
    scores = process_next(processors, [prefix], drafted, torch.zeros((1, 10), device="meta"))
    assert scores.device.type == "meta" and scores.shape == (1, 10)
    scores = process_positions(processors, [prefix], drafted, torch.zeros((1, 3, 10), device="meta"))
    assert scores.device.type == "meta" and scores.shape == (1, 3, 10)
