"""Offering accepted tokens to generate()'s stopping criteria one at a time, as the target alone would.

The target alone asks its stopping criteria after every token; a speculative round adds several tokens at once.
A criterion that reads the sequence (a stop token, a stop string, a length) may fire at any of them, so each
accepted token is offered in order and the round is cut after the first one that stops the sequence. The
criteria generate() adds for `max_length` and the EOS tokens are left out: every loop cuts at those itself.
Like generate(), the criteria receive `scores` as the tuple of processed scores so far when the call returns
them (`output_scores=True`), else None.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import EosTokenCriteria, MaxLengthCriteria, StoppingCriteriaList


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
