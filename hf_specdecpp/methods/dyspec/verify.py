"""Verifying a draft tree against the target's distributions at its nodes.

Both rules return the accepted nodes (a path down from the root) plus one token chosen by the target (the
bonus token), so that every round adds at least one token. The per-node work is done for every node at once
on the device; one host synchronisation brings the per-node outcomes back, and the walk itself is on the host.

- Greedy: move to the child whose token is the target's argmax; stop at a node without such a child.
- Sampling: multi-draft speculative sampling over each node's children in draw order (recursive rejection
  sampling, SpecInfer / DySpec), exact for children drawn without replacement from the draft's distribution
  (`recursive_rejection`); the tree must have been grown without looking at a slot's own draw (`growth.py`).
"""

from __future__ import annotations

import torch

from ...core.device import to_device
from .tree import HostTree


def children_table(tree: HostTree, device: torch.device) -> tuple[torch.LongTensor, torch.BoolTensor]:
    """(`(N, K)` child tokens of every selected node in draw order, `(N, K)` which entries exist)."""
    width = max((len(c) for c in tree.children), default=0)
    tokens = [[tree.tokens[c] for c in children] + [0] * (width - len(children)) for children in tree.children]
    exists = [[True] * len(children) + [False] * (width - len(children)) for children in tree.children]
    table = to_device([tokens, exists], device).reshape(2, len(tree.children), width)  # one staged copy
    return table[0], table[1].bool()


def recursive_rejection_batched(p: torch.Tensor, q: torch.Tensor, tokens: torch.LongTensor,
                                exists: torch.BoolTensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Acceptance probabilities `(N, K)` of children drawn WITHOUT replacement from `q` `(N, V)`, tried in draw
    order against `p` `(N, V)`, and the residual `(N, V)` the bonus token is drawn from when all are rejected.

    Child k was drawn from `q_k`: `q` with the earlier children removed and renormalised. With `p_1 = p`, child k
    is accepted with probability `min(1, p_k(x_k) / q_k(x_k))`; on rejection `p_{k+1} = normalise(max(p_k - q_k,
    0))`. Each step is single-draft speculative sampling of `p_k` with proposal `q_k`, so it outputs exactly
    `p_k`; `p_{k+1}` does not depend on which token child k drew, hence the whole procedure outputs exactly `p`
    (by induction from the last child), whenever the number of children is decided before their draws.
    """
    current, remaining = p.clone(), q.to(p.dtype).clone()
    accept = torch.zeros(tokens.shape, dtype=p.dtype, device=p.device)
    for k in range(tokens.shape[1]):
        valid = exists[:, k]
        token = tokens[:, k : k + 1]
        q_k = remaining / remaining.sum(-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
        p_x, q_x = current.gather(-1, token)[:, 0], q_k.gather(-1, token)[:, 0]
        ratio = torch.where(q_x > 0, p_x / q_x.clamp_min(torch.finfo(p.dtype).tiny), torch.ones_like(p_x))
        accept[:, k] = torch.where(valid, ratio.clamp(max=1.0), torch.zeros_like(ratio))
        residual = (current - q_k).clamp_min(0.0)
        total = residual.sum(-1, keepdim=True)
        # total == 0 means p_k == q_k: child k is always accepted, the residual is never used
        update = valid[:, None] & (total > 0)
        current = torch.where(update, residual / total.clamp_min(torch.finfo(p.dtype).tiny), current)
        remaining = torch.where(valid[:, None], remaining.scatter(-1, token, 0.0), remaining)
    return accept, current


def recursive_rejection(p: torch.Tensor, q: torch.Tensor, tokens: list[int]) -> tuple[list[float], torch.Tensor]:
    """`recursive_rejection_batched` for one node: (acceptance probabilities in draw order, residual)."""
    index = torch.tensor([tokens], dtype=torch.long, device=p.device).reshape(1, len(tokens))
    accept, residual = recursive_rejection_batched(p[None], q[None], index,
                                                   torch.ones_like(index, dtype=torch.bool))
    return accept[0].tolist(), residual[0]


def greedy_outcomes(tree: HostTree, scores: torch.Tensor) -> tuple[list[int], int]:
    """Greedy walk: (accepted node positions in `tree`, bonus token); `scores` `(N, V)` are the target's
    processed scores after each selected node."""
    argmax = scores.argmax(dim=-1).tolist()  # the round's host sync
    path, node = [], 0
    while True:
        child = next((c for c in tree.children[node] if tree.tokens[c] == argmax[node]), None)
        if child is None:
            return path, argmax[node]
        path.append(child)
        node = child


def sampling_outcomes(tree: HostTree, target_probs: torch.Tensor, draft_probs: torch.Tensor) -> tuple[list[int], int]:
    """Sampling walk: (accepted node positions, bonus token). `target_probs`/`draft_probs` `(N, V)` are the
    target's and the draft's processed distributions after each selected node (rows of leaves are not used
    for the draft). Every node's draws are made at once; the walk uses those of the nodes it visits."""
    tokens, exists = children_table(tree, target_probs.device)
    accept, residual = recursive_rejection_batched(target_probs, draft_probs, tokens, exists)
    draws = torch.rand(accept.shape, device=accept.device, dtype=accept.dtype)
    taken = (draws < accept) & exists
    first = torch.full((taken.shape[0],), -1, dtype=torch.long, device=taken.device)
    if taken.shape[1]:
        first = torch.where(taken.any(dim=1), taken.long().argmax(dim=1), first)
    bonus = torch.multinomial(residual, 1)[:, 0]
    first_list, bonus_list = torch.stack([first, bonus]).tolist()  # the round's host sync
    path, node = [], 0
    while first_list[node] >= 0:
        node = tree.children[node][first_list[node]]
        path.append(node)
    return path, bonus_list[node]
