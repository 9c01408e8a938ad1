"""generate()'s per-token rules (logits processors, stopping criteria) applied to several tokens at once.

generate() applies them after every token; a speculative round scores K + 1 positions in one pass and adds up
to K + 1 tokens at once, so both are applied here position by position, as generate() itself would.

Logits processors: a processor sees the token ids before the position it scores (repetition penalty, no-repeat
n-grams and min-length rules read them). Verifying K candidates scores K + 1 positions, each with its own prefix,
one row at a time: a processor that generate() built for the whole batch (the repetition penalty's per-row prompt
padding, `prefix_allowed_tokens_fn`'s batch index) is given its row's share (`processors_for_row`). The ids are
moved to the scores' device, so a draft on another device than the target works. Warpers that ignore the ids
(temperature, top-k, top-p, min-p, typical, epsilon, eta) are applied to all positions in one batched call.

Stopping criteria: a criterion that reads the sequence (a stop token, a stop string, a length) may fire at any
token of a round, so each accepted token is offered in order and the round is cut after the first one that stops
the sequence (`first_stop`). The criteria generate() adds for `max_length` and the EOS tokens are left out: every
loop cuts at those itself (`criteria_to_offer`). Like generate(), the criteria receive `scores` as the tuple of
processed scores so far when the call returns them (`output_scores=True`), else None.
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import torch
from transformers import (
    EosTokenCriteria,
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    LogitsProcessorList,
    MaxLengthCriteria,
    MinPLogitsWarper,
    PrefixConstrainedLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    StoppingCriteriaList,
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
    """The processed scores of every verified position, as generate() would have computed them one by one.

    Args:
        processors (`LogitsProcessorList`): the call's logits processors.
        prefixes (`list[RowPrefix]`): per row, its ids as generate() shows them and its processors (read only
            when a processor reads token ids).
        candidates (`torch.LongTensor` of shape `(B, K)`): the drafted tokens; position i of row b is scored after
            `prefixes[b].ids` followed by `candidates[b, :i]`.
        logits (`torch.Tensor` of shape `(B, K + 1, V)`): the target's raw logits.

    Returns:
        `torch.Tensor` of shape `(B, K + 1, V)`, float32.
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
    """The processed scores of the next drafted token.

    Args:
        processors (`LogitsProcessorList`): the call's logits processors.
        prefixes (`list[RowPrefix]`): per row, its ids as generate() shows them and its processors (read only
            when a processor reads token ids).
        drafted (`torch.LongTensor` of shape `(B, s)`): the tokens drafted so far this round.
        logits (`torch.Tensor` of shape `(B, V)`): the draft's raw logits (in the target's vocabulary).

    Returns:
        `torch.Tensor` of shape `(B, V)`, float32.
    """
    scores = logits.float()
    if len(processors) == 0:
        return scores
    if not reads_token_ids(processors):
        return processors(drafted.new_zeros((scores.shape[0], 1)), scores)
    return torch.cat([row_processors(torch.cat([ids.to(scores.device), drafted[row].to(scores.device)])[None],
                                     scores[row][None])
                      for row, (ids, row_processors) in enumerate(prefixes)])


# ---------------------------------------------------------------------------------------------------------------
# Stopping criteria, token by token
# ---------------------------------------------------------------------------------------------------------------

def criteria_to_offer(criteria: StoppingCriteriaList | None, max_length: int,
                      eos_token_ids: torch.Tensor | None) -> StoppingCriteriaList:
    """The criteria the loops must ask token by token: all but generate()'s own length and EOS criteria.

    Args:
        criteria: the call's stopping criteria (generate()'s and the user's).
        max_length: the call's length limit (the loops never pass it).
        eos_token_ids: the call's EOS tokens (the loops end a row at the first one).

    Returns:
        The remaining criteria (empty when only the length and EOS limits stop the call).
    """
    eos = set(eos_token_ids.reshape(-1).tolist()) if eos_token_ids is not None else set()
    kept = StoppingCriteriaList()
    for criterion in criteria or ():
        if type(criterion) is MaxLengthCriteria and criterion.max_length >= max_length:
            continue
        if type(criterion) is EosTokenCriteria and set(criterion.eos_token_id.reshape(-1).tolist()) <= eos:
            continue
        kept.append(criterion)
    return kept


def first_stop(criteria: StoppingCriteriaList, sequence: torch.LongTensor, start: int,
               scores: list[torch.Tensor] | None = None, scores_start: int = 0) -> int | None:
    """The length at which the criteria first stop `sequence`, offering its tokens from index `start` on.

    Args:
        criteria: the criteria to ask (see `criteria_to_offer`); none asks nothing.
        sequence: one row as generate() shows it (prompt as given, then the generated tokens), 1D.
        start: the first token to offer (earlier ones were offered before).
        scores: when the call returns scores, the processed scores of every generated token `(V,)` so far,
            including those of `sequence[start:]`; criteria then receive them as generate() passes them.
        scores_start: the index in `sequence` of the first generated token (the one `scores[0]` belongs to).

    Returns:
        The length `n > start` such that the criteria stop `sequence[:n]` and no shorter prefix from `start`
        on, or None when they stop none (one host synchronisation per offered token).
    """
    if not criteria:
        return None
    for length in range(start + 1, sequence.shape[0] + 1):
        seen: Any = None
        if scores is not None:
            seen = tuple(s[None] for s in scores[: length - scores_start])
        if bool(criteria(sequence[None, :length], seen).reshape(-1)[0]):
            return length
    return None
