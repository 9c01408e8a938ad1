"""Verifying a draft tree against the target's distributions at its nodes.

Both rules walk down from the root and return the accepted nodes plus one token chosen by the target (the
bonus token), so that every round adds at least one token.

- Greedy: move to the child whose token is the target's argmax; stop at a node without such a child.
- Sampling: multi-draft speculative sampling (SpecInfer, DySpec) over each node's children, which keeps the
  target's distribution exactly. See `recursive_rejection`.
"""

from __future__ import annotations

from typing import Callable

import torch

from .tree import ROOT, DraftTree

# (target probabilities p, draft probabilities q, child tokens in draw order) -> (acceptance probabilities, residual)
AcceptanceRule = Callable[[torch.Tensor, torch.Tensor, list[int]], tuple[list[float], torch.Tensor]]


def recursive_rejection(p: torch.Tensor, q: torch.Tensor, tokens: list[int]) -> tuple[list[float], torch.Tensor]:
    """Acceptance probabilities of children drawn WITHOUT replacement from `q`, tried in draw order.

    Child k was drawn from `q_k`: `q` with the earlier children removed and renormalised. With `p_1 = p`, child
    k is accepted with probability `min(1, p_k(x_k) / q_k(x_k))`; on rejection `p_{k+1} = normalise(max(p_k -
    q_k, 0))`. When every child is rejected the token is drawn from the returned residual `p_{K+1}`. Each step
    is single-draft speculative sampling of `p_k` with proposal `q_k`, so it outputs exactly `p_k`; `p_{k+1}`
    depends only on the earlier children, hence the whole procedure outputs exactly `p` (by induction from the
    last child). Returns the K conditional acceptance probabilities and the residual.
    """
    remaining = q.to(p.dtype).clone()
    accept = []
    for token in tokens:
        q_k = remaining / remaining.sum()
        accept.append(min(1.0, float(p[token] / q_k[token])))
        residual = (p - q_k).clamp(min=0)
        total = residual.sum()
        if total > 0:  # total == 0 means p == q_k: this child is always accepted, the rest is never reached
            p = residual / total
        remaining[token] = 0.0
    return accept, p


def greedy_walk(tree: DraftTree, target_scores: Callable[[int], torch.Tensor]) -> tuple[list[int], int]:
    """Accept the longest path whose tokens are the target's argmax at each node; return it and the bonus token.

    `target_scores(node)` gives the target's processed scores `(vocab,)` for the token after `node`.
    """
    path: list[int] = []
    node = ROOT
    while True:
        token = int(target_scores(node).argmax())
        child = tree.child_with_token(node, token)
        if child is None:
            return path, token
        path.append(child)
        node = child


def sampling_walk(
    tree: DraftTree,
    target_probs: Callable[[int], torch.Tensor],
    rule: AcceptanceRule = recursive_rejection,
) -> tuple[list[int], int]:
    """Multi-draft speculative sampling down the tree; return the accepted nodes and the bonus token.

    At each node the children are tried in the order they were drawn with `rule`'s acceptance probabilities;
    the first accepted child becomes the next node. If none is accepted (or the node has no children) the
    bonus token is drawn from the residual (or from the target's distribution itself).
    """
    path: list[int] = []
    node = ROOT
    while True:
        p = target_probs(node)
        children = tree.children[node]
        if not children:
            return path, int(torch.multinomial(p, 1))
        accept, residual = rule(p, tree.probs[node].to(p.device), [tree.tokens[child] for child in children])
        chosen = next((child for child, a in zip(children, accept) if float(torch.rand(())) < a), None)
        if chosen is None:
            return path, int(torch.multinomial(residual, 1))
        path.append(chosen)
        node = chosen
