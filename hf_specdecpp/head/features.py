"""What the acceptance head reads besides hidden states: confidence features of the draft distribution."""

from __future__ import annotations

import torch

DRAFTED_TOKEN = "drafted_token"
"""`input_state`: the head reads the hidden state AT the drafted token (reference SpecDec++). That state exists only
after the draft has read the token, i.e. one draft step later: the decision to stop lags one token behind."""

PRODUCING_STATE = "producing_state"
"""`input_state`: the head reads the hidden state that PRODUCED the drafted token (the one whose logits it was drawn
from), plus optional confidence features of that distribution. Every token is scored as soon as it is drafted."""

INPUT_STATES = (DRAFTED_TOKEN, PRODUCING_STATE)

CONFIDENCE_FEATURES = ("log_q_token", "log_q_max", "entropy")
"""Features of the draft distribution a token was drawn from: log-probability of the token, of the most likely
token, and the entropy (nats)."""


def confidence_features(scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """`CONFIDENCE_FEATURES` `(..., 3)` of the distributions `softmax(scores)` `(..., V)` and drawn `tokens` `(...)`.

    `scores` are the processed logits the tokens were drawn from (greedy: the logits; sampling: after
    temperature / top-k / top-p, where removed tokens hold -inf). Computed in float32.

    Args:
        scores (`torch.Tensor` of shape `(..., vocab_size)`): the processed draft scores.
        tokens (`torch.LongTensor` of shape `(...)`): the tokens drawn from them.

    Returns:
        `torch.Tensor` of shape `(..., 3)`: log q(token), log q_max, entropy (nats), float32.
    """
    log_q = torch.log_softmax(scores.float(), dim=-1)
    log_q_token = log_q.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)
    entropy = torch.special.entr(log_q.exp()).sum(dim=-1)
    return torch.stack([log_q_token, log_q.max(dim=-1).values, entropy], dim=-1)


def distribution_features(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log q over the vocabulary `(..., V)`, log q_max `(...)`, entropy `(...)`) of `softmax(scores)`: the parts of
    `confidence_features` that do not depend on the drawn token.

    Args:
        scores (`torch.Tensor` of shape `(..., vocab_size)`): the processed draft scores.

    Returns:
        `tuple` of three float32 `torch.Tensor`s: shapes `(..., vocab_size)`, `(...)`, `(...)`.
    """
    log_q = torch.log_softmax(scores.float(), dim=-1)
    return log_q, log_q.max(dim=-1).values, torch.special.entr(log_q.exp()).sum(dim=-1)


def top1_probability(scores: torch.Tensor) -> torch.Tensor:
    """The draft's confidence in its most likely token, `max_v softmax(scores)_v`, per row: the training-free
    acceptance estimate ("top1") the cost-aware rule reads when no head predicts better.

    Args:
        scores (`torch.Tensor` of shape `(..., vocab_size)`): the processed draft scores.

    Returns:
        `torch.Tensor` of shape `(...)`: float32 probabilities.
    """
    return torch.softmax(scores.float(), dim=-1).max(dim=-1).values
