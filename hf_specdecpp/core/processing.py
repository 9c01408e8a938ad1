"""Applying generate()'s logits processors at drafted positions, as generate() itself would.

A processor sees the token ids before the position it scores (repetition penalty, no-repeat n-grams and
min-length rules read them). Verifying K candidates scores K + 1 positions, each with its own prefix, one row
at a time: a processor that generate() built for the whole batch (the repetition penalty's per-row prompt
padding, `prefix_allowed_tokens_fn`'s batch index) is given its row's share (`processors_for_row`). The ids
are moved to the scores' device, so a draft on another device than the target works. Warpers that ignore the
ids (temperature, top-k, top-p, min-p, typical, epsilon, eta) are applied to all positions in one batched
call instead.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from transformers import (
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    LogitsProcessorList,
    MinPLogitsWarper,
    PrefixConstrainedLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

IDS_FREE_PROCESSORS = (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper,
                       TypicalLogitsWarper, EpsilonLogitsWarper, EtaLogitsWarper)


def reads_token_ids(processors: LogitsProcessorList) -> bool:
    """False when every processor is a warper that ignores the token ids (or there is none)."""
    return any(type(p) not in IDS_FREE_PROCESSORS for p in processors)


class RowPrefix(NamedTuple):
    """One row as generate() shows it to processors (its prompt as given, padding included, then its generated
    tokens; 1D), with the call's processors as they apply to that row."""

    ids: torch.LongTensor
    processors: LogitsProcessorList


def processors_for_row(processors: LogitsProcessorList, row: int) -> LogitsProcessorList:
    """`processors`, built by generate() for a whole batch, as they apply to batch row `row` called alone.

    Args:
        processors: the call's logits processors.
        row: the row's index in the batch generate() was called with.

    Returns:
        The same list when no processor holds per-row state, else a list with per-row copies of those that do.
    """
    out = LogitsProcessorList()
    for processor in processors:
        ignore = getattr(processor, "prompt_ignore_length", None)  # transformers >= 5.16: per-row prompt padding
        if isinstance(processor, RepetitionPenaltyLogitsProcessor) and isinstance(ignore, torch.Tensor):
            processor = copy.copy(processor)
            processor.prompt_ignore_length = ignore[row: row + 1]
        elif isinstance(processor, PrefixConstrainedLogitsProcessor) and row:
            processor = copy.copy(processor)
            allowed = processor._prefix_allowed_tokens_fn
            processor._prefix_allowed_tokens_fn = lambda batch_id, ids, allowed=allowed: allowed(row + batch_id, ids)
        out.append(processor)
    return out if any(a is not b for a, b in zip(out, processors)) else processors


def process_positions(processors: LogitsProcessorList, prefixes: list[RowPrefix], candidates: torch.LongTensor,
                      logits: torch.Tensor) -> torch.Tensor:
    """Processed scores `(B, K + 1, V)` (float32) for raw `logits` `(B, K + 1, V)`.

    Position i of row b is scored after `prefixes[b].ids` followed by `candidates[b, :i]`, by
    `prefixes[b].processors` (`prefixes` is read only when a processor reads token ids).
    """
    scores = logits.float()
    if len(processors) == 0:
        return scores
    batch, positions, vocab = scores.shape
    if not reads_token_ids(processors):
        flat = processors(candidates.new_zeros((batch * positions, 1)), scores.reshape(batch * positions, vocab))
        return flat.reshape(batch, positions, vocab)
    out = torch.empty_like(scores)
    for row in range(batch):
        ids, row_processors = prefixes[row]
        full = torch.cat([ids.to(scores.device), candidates[row].to(scores.device)])[None]
        for i in range(positions):
            out[row, i] = row_processors(full[:, : ids.shape[0] + i], scores[row, i][None])[0]
    return out


def process_next(processors: LogitsProcessorList, prefixes: list[RowPrefix], drafted: torch.LongTensor,
                 logits: torch.Tensor) -> torch.Tensor:
    """Processed scores `(B, V)` (float32) for the next token after `prefixes[b].ids` + `drafted[b]` (`(B, s)`)."""
    scores = logits.float()
    if len(processors) == 0:
        return scores
    if not reads_token_ids(processors):
        return processors(drafted.new_zeros((scores.shape[0], 1)), scores)
    return torch.cat([row_processors(torch.cat([ids.to(scores.device), drafted[row].to(scores.device)])[None],
                                     scores[row][None])
                      for row, (ids, row_processors) in enumerate(prefixes)])
