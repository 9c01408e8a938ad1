"""Verifying drafted chains against the target: greedy matching and speculative sampling, batched by row.

Greedy keeps the longest prefix of candidates that equal the target's argmax and adds the target's own token.
Sampling accepts candidate i with probability min(1, p_i(x_i) / q_i(x_i)), where q_i is the processed draft
distribution the token was drawn from and p_i the processed target distribution; at the first rejection it
draws from the residual max(p_i - q_i, 0) (normalised), and after the row's last candidate from p itself.
Both keep the target's output exactly (Leviathan et al., 2023; Chen et al., 2023).

Rows may draft different numbers of candidates (`lengths`); positions past a row's length are never accepted.
"""

from __future__ import annotations

import torch


def verify_greedy(candidates: torch.LongTensor, target_scores: torch.Tensor,
                  lengths: torch.LongTensor) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Greedy verification of `candidates` `(B, K)` against processed target scores `(B, K + 1, V)`.

    Returns (accepted counts `(B,)`, the target's token after the accepted prefix `(B,)`).
    """
    chosen = target_scores.argmax(dim=-1)  # (B, K + 1)
    accepted = accepted_prefix(candidates == chosen[:, :-1], lengths)
    return accepted, chosen.gather(1, accepted[:, None]).squeeze(1)


def verify_sampling(candidates: torch.LongTensor, draft_probs: torch.Tensor, target_probs: torch.Tensor,
                    lengths: torch.LongTensor) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Speculative sampling of `candidates` `(B, K)` drawn from `draft_probs` `(B, K, V)` against `target_probs`
    `(B, K + 1, V)` (both normalised). Returns (accepted counts `(B,)`, the next token after them `(B,)`)."""
    batch, k = candidates.shape
    if k == 0:
        return candidates.new_zeros(batch), torch.multinomial(target_probs[:, 0], 1).squeeze(1)
    index = candidates.unsqueeze(-1)
    p = target_probs[:, :k].gather(-1, index).squeeze(-1)
    q = draft_probs.gather(-1, index).squeeze(-1)
    ratio = torch.where(q > 0, p / q.clamp_min(torch.finfo(q.dtype).tiny), torch.zeros_like(p))
    draws = torch.rand(ratio.shape, device=ratio.device, dtype=ratio.dtype)
    accepted = accepted_prefix(draws <= ratio, lengths)
    rows = torch.arange(batch, device=candidates.device)
    p_next = target_probs[rows, accepted]  # p at the first rejection, or after the last candidate
    q_next = torch.cat([draft_probs, torch.zeros_like(draft_probs[:, :1])], dim=1)[rows, accepted]
    rejected = (accepted < lengths).unsqueeze(-1)  # draw from the residual only where a candidate was rejected
    residual = torch.where(rejected, (p_next - q_next).clamp_min(0.0), p_next)
    mass = residual.sum(-1, keepdim=True)
    # p == q_i exactly leaves no residual mass; that rejection then had probability 0, so any token is fine.
    residual = torch.where(mass > 0, residual, p_next)
    return accepted, torch.multinomial(residual, 1).squeeze(1)


def accepted_prefix(matches: torch.Tensor, lengths: torch.LongTensor) -> torch.LongTensor:
    """Per row, the number of leading True entries of `matches` `(B, K)`, at most `lengths[row]`."""
    k = matches.shape[1]
    within = torch.arange(k, device=matches.device)[None, :] < lengths[:, None]
    return (matches & within).long().cumprod(dim=1).sum(dim=1)
