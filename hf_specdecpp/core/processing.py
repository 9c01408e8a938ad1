"""Applying generate()'s logits processors at drafted positions, as generate() itself would.

A processor sees the token ids before the position it scores (repetition penalty, no-repeat n-grams and
min-length rules read them). Verifying K candidates scores K + 1 positions, each with its own prefix. Warpers
that ignore the ids (temperature, top-k, top-p, min-p, typical, epsilon, eta) are applied to all positions in
one batched call instead.
"""

from __future__ import annotations

import torch
from transformers import (
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    LogitsProcessorList,
    MinPLogitsWarper,
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


def process_positions(processors: LogitsProcessorList, prefixes: list[torch.LongTensor], candidates: torch.LongTensor,
                      logits: torch.Tensor) -> torch.Tensor:
    """Processed scores `(B, K + 1, V)` (float32) for raw `logits` `(B, K + 1, V)`.

    Position i of row b is scored after `prefixes[b]` (the row's ids as generate() shows them to processors:
    its prompt as given, padding included, then its generated tokens; 1D) followed by `candidates[b, :i]`.
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
        full = torch.cat([prefixes[row], candidates[row]])[None]
        width = prefixes[row].shape[0]
        for i in range(positions):
            out[row, i] = processors(full[:, : width + i], scores[row, i][None])[0]
    return out


def process_next(processors: LogitsProcessorList, prefixes: list[torch.LongTensor], drafted: torch.LongTensor,
                 logits: torch.Tensor) -> torch.Tensor:
    """Processed scores `(B, V)` (float32) for the next token after `prefixes[b]` + `drafted[b]` (`(B, s)`)."""
    scores = logits.float()
    if len(processors) == 0:
        return scores
    if not reads_token_ids(processors):
        return processors(drafted.new_zeros((scores.shape[0], 1)), scores)
    return torch.cat([processors(torch.cat([prefixes[row], drafted[row]])[None], scores[row][None])
                      for row in range(scores.shape[0])])
