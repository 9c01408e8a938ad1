"""How a draft tree grows: which children a node gets, what they are worth, and when to stop.

Growth is level by level. Each level reads every selected node that has no children yet ("the frontier") in
ONE draft forward pass, draws up to `budget` candidate children per node, and keeps the `budget` nodes of
highest value. Values fall along every path and across siblings, so the best nodes form a tree, and level by
level selection keeps exactly the nodes best-first growth (DySpec) would add, with one draft pass per level
instead of one per node.

Children and values. A node's children are drawn from the draft's processed distribution q at the node:
greedy decoding takes the most probable tokens, sampling draws WITHOUT replacement (Gumbel-top-k). With R_j =
1 - sum_{i<j} q(x_i) and q_j = q / R_j on the undrawn tokens (the law child j is drawn from):

- `own` (acceptance once reached): q_j(x_j), the draft's estimate that the target's token is x_j given that the
  earlier children were not; an acceptance head replaces it for the first child (a producing-state head when
  the child is drawn, a drafted-token head once the child is read);
- `reach`: the parent's reach times its own estimate, times (1 - own) of every earlier sibling;
- `value` for greedy decoding: reach * own, which is DySpec's value(parent) * q(x_j) without a head.

Exact sampling needs more: multi-draft speculative sampling keeps the target's distribution only if whether a
child slot enters the tree does not depend on the token drawn for it (the children a node is verified with
must be a stopping time of its draws). Under sampling a slot's value is therefore token-free: reach times the
EXPECTED acceptance of the slot's draw, E_{x~q_j}[q_j(x)] = sum of q_j^2 (an acceptance head's expectation over
q for the first child). What was learnt from earlier draws (earlier siblings, ancestors) may be used; the slot's
own token, and anything below it, may not. Children's values are bounded by their parent's and earlier
siblings' values, which keeps the selection a tree and never lets a node's descendants decide on the node.
"""

from __future__ import annotations

import torch

from .tree import SHRINK


def draw_children(probs: torch.Tensor, count: int, do_sample: bool) -> tuple[torch.LongTensor, torch.Tensor]:
    """(`(F, C)` children tokens in draw order, their draft probabilities) for distributions `probs` `(F, V)`.

    Greedy takes the `count` most probable tokens; sampling draws without replacement (sorting `log q + Gumbel`
    gives the same order as drawing, removing and renormalising). Tokens of probability 0 come last with q = 0.
    """
    keys = probs.log()
    if do_sample:
        keys = keys - torch.empty_like(probs).exponential_().log()
    top = torch.topk(keys, k=min(count, probs.shape[-1]), dim=-1).indices
    return top, probs.gather(-1, top)


def child_estimates(parent_reach: torch.Tensor, parent_own: torch.Tensor, parent_value: torch.Tensor,
                    probs: torch.Tensor, child_probs: torch.Tensor, do_sample: bool,
                    first_own: torch.Tensor | None = None, first_expected: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(reach, own, value) `(F, C)` of the children drawn at `F` nodes (see the module docstring).

    `probs` `(F, V)` is q at each node, `child_probs` `(F, C)` q of its children in draw order; `first_own` /
    `first_expected` `(F,)` are an acceptance head's estimate for the drawn first child and its expectation over q.
    """
    before = torch.cumsum(child_probs, dim=-1) - child_probs  # q mass drawn before each child
    remaining = (1.0 - before).clamp_min(1e-12)
    own = (child_probs / remaining).clamp(0.0, 1.0)
    squares = (probs * probs).sum(-1, keepdim=True) - (torch.cumsum(child_probs ** 2, dim=-1) - child_probs ** 2)
    expected = (squares / remaining ** 2).clamp(0.0, 1.0)
    if first_own is not None:
        own = torch.cat([first_own[:, None], own[:, 1:]], dim=1)
    if first_expected is not None:
        expected = torch.cat([first_expected[:, None], expected[:, 1:]], dim=1)
    not_yet = torch.cumprod(torch.cat([torch.ones_like(own[:, :1]), 1.0 - own[:, :-1]], dim=1), dim=1)
    reach = (parent_reach * parent_own)[:, None] * not_yet
    raw = reach * (expected if do_sample else own)
    raw = torch.where(child_probs > 0, raw, torch.zeros_like(raw))
    return reach, own, bounded_values(raw, parent_value)


def bounded_values(raw: torch.Tensor, parent_value: torch.Tensor) -> torch.Tensor:
    """Values `(F, C)` strictly below the parent's and each earlier sibling's: a running minimum, shrunk per step."""
    steps = torch.arange(1, raw.shape[1] + 1, device=raw.device, dtype=raw.dtype)
    capped = torch.minimum(raw, parent_value[:, None]) * SHRINK ** steps
    return torch.cummin(capped, dim=1).values


def worth_another_level(selected_value: float, frontier_value: float, levels: int, cost_ratio: float) -> bool:
    """Can one more level of draft passes raise the expected tokens per unit of time?

    A round yields `1 + sum(values)` tokens in expectation and costs one target pass plus `cost_ratio` per draft
    pass (one per level). The next level adds at most the frontier's value (children of a node are worth less
    than it in total), so it can pay only if `(E + F) / (1 + c (l + 1)) > E / (1 + c l)`.
    """
    expected = 1.0 + selected_value
    return (expected + frontier_value) * (1.0 + cost_ratio * levels) > expected * (1.0 + cost_ratio * (levels + 1))
