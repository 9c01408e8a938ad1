"""How a draft tree grows: which children a node gets, what they are worth, and when to stop.

Growth is level by level. Each level reads every selected node that has no children yet ("the frontier") in
ONE draft forward pass, draws as many candidate children per node as could still enter the selection
(`frontier`: `budget` minus the node's place among the selected nodes), and keeps the `budget` nodes of
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

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ...core.device import to_device
from .tree import ROOT, SHRINK, DraftTree

Reader = Callable[[DraftTree, list[int]], tuple[torch.Tensor, torch.Tensor | None]]
"""`read(tree, nodes)`: run the draft on `nodes` (indices of not-yet-read nodes, parents read before children);
returns the processed draft scores `(F, V)` after each node, and the draft's hidden states `(F, H)` (or None)."""
Drawer = Callable[[torch.Tensor, int, bool], tuple[torch.LongTensor, torch.Tensor]]
"""`draw(probs, count, do_sample)`: children in draw order and their probabilities (`draw_children`)."""


@dataclass(frozen=True)
class GrowthSettings:
    """How one round grows: node budget, depth limit, optional cost ratio, decoding, EOS tokens, head."""

    budget: int
    max_depth: int
    do_sample: bool
    cost_ratio: float | None = None
    eos: torch.Tensor | None = None
    head: object = None  # an AcceptanceHead (or None)


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
    """Values `(F, C)` strictly below the parent's and each earlier sibling's: `v_j = SHRINK * min(raw_j, v_{j-1})`
    with `v_{-1}` the parent's value (a running minimum, shrunk at every step so that no two are equal)."""
    raw = torch.minimum(raw.double(), parent_value.double()[:, None])
    steps = torch.arange(raw.shape[1], device=raw.device, dtype=torch.float64)
    scaled = torch.cummin(raw * SHRINK ** -steps, dim=1).values
    return (scaled * SHRINK ** (steps + 1)).to(raw.dtype)


def worth_another_level(selected_value: float, frontier_value: float, levels: int, cost_ratio: float) -> bool:
    """Can one more level of draft passes raise the expected tokens per unit of time?

    A round yields `1 + sum(values)` tokens in expectation and costs one target pass plus `cost_ratio` per draft
    pass (one per level). The next level adds at most the frontier's value (children of a node are worth less
    than it in total), so it can pay only if `(E + F) / (1 + c (l + 1)) > E / (1 + c l)`.
    """
    expected = 1.0 + selected_value
    return (expected + frontier_value) * (1.0 + cost_ratio * levels) > expected * (1.0 + cost_ratio * (levels + 1))


def children_to_keep(counts: list[int], width: int) -> list[int]:
    """Flat positions in an `(F, width)` draw of the first `counts[i]` children of each row i (empty when every
    row keeps all `width`)."""
    if all(count >= width for count in counts):
        return []
    return [row * width + j for row, count in enumerate(counts) for j in range(min(count, width))]


def expand(tree: DraftTree, nodes: torch.LongTensor, scores: torch.Tensor, hidden: torch.Tensor | None,
           settings: GrowthSettings, draw: Drawer = draw_children, width: int | None = None,
           keep: torch.LongTensor | None = None) -> torch.Tensor:
    """Draw the children of `nodes`, just read with processed scores `(F, V)`; return their q `(F, V)`.

    `width` children are drawn per node (default `budget`), of which the tree keeps those at the flat positions
    `keep` (`children_to_keep`; None: all)."""
    probs = scores.softmax(dim=-1)
    tokens, child_probs = draw(probs, width or settings.budget, settings.do_sample)
    head, first_own, first_expected = settings.head, None, None
    if head is not None and hidden is not None:
        if head.scores_without_lag:
            first_own = head.predict_drafted(hidden, scores, tokens[:, 0])
            if settings.do_sample:
                first_expected = head.expected_acceptance(hidden, scores)
        else:  # a drafted-token head scores the node it reads: a first child refines its own estimate
            first_child = (tree.ranks[nodes] == 0) & (nodes != ROOT)
            tree.own[nodes] = torch.where(first_child, head(hidden.float()), tree.own[nodes])
    reach, own, value = child_estimates(tree.reach[nodes], tree.own[nodes], tree.value[nodes], probs, child_probs,
                                        settings.do_sample, first_own, first_expected)
    if keep is None:
        tree.add_children(nodes, tokens, reach, own, value)
    else:  # drop the draws no selection can use: the rest stay in draw order, each under its parent
        def kept(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1)[keep]
        tree.add_nodes(kept(nodes[:, None].expand_as(tokens)), kept(tokens), keep % tokens.shape[1], kept(reach),
                       kept(own), kept(value))
    tree.expanded[nodes] = True
    return probs


class Frontier(NamedTuple):
    """What one level reads on the host (`frontier`)."""

    nodes: list[int]  # selected nodes not read yet whose children could still enter the tree
    counts: list[int]  # how many children each of them can use
    open_value: float  # their total value
    tree_value: float  # the selected tree's total value
    also: float  # the value of `frontier`'s `also` (0.0 without)


def frontier(tree: DraftTree, settings: GrowthSettings, also: torch.Tensor | None = None) -> Frontier:
    """The frontier of the tree grown so far, in one host sync, which also brings the selected tree's structure
    to the host (`tree.snapshot`), so that the round's last level leaves nothing more to read for `HostTree`, and
    reads the scalar `also` (a device value the caller needs on the host) with the rest.

    The children a node can use: a node at place p of the selection (p - 1 selected nodes worth at least as
    much, its ancestors among them) has values at or above its own on p nodes that stay in the tree; its child j
    is worth less than those and than its j earlier siblings, so it can be selected only if p + j < budget, now
    or after any later level. Drawing `budget - p` children therefore grows exactly the tree that drawing
    `budget` would, from the same draws."""
    chosen, place = tree.ranked(settings.budget)
    drafted = chosen.clone()
    drafted[ROOT] = False
    open_ = drafted & ~tree.expanded & (tree.depths < settings.max_depth)
    if settings.eos is not None:
        open_ &= ~torch.isin(tree.tokens, settings.eos.to(tree.device))
    # once the budget is full, the weakest selected node's children (worth less than it) cannot enter
    floor = torch.where(drafted, tree.value, torch.full_like(tree.value, float("inf"))).min()
    open_ &= (drafted.sum() < settings.budget) | (tree.value > floor)
    totals = torch.stack([torch.where(open_, tree.value, 0.0).sum(), torch.where(drafted, tree.value, 0.0).sum(),
                          tree.value.new_zeros(()) if also is None else also.reshape(()).to(tree.value.dtype)])
    rows = torch.stack([open_.long(), place]).reshape(-1)
    summary = torch.cat([totals, rows.to(totals.dtype), tree.selection_rows(chosen).reshape(-1).to(totals.dtype)])
    summary = summary.tolist()  # the level's one host sync
    n = tree.num_nodes
    (flags, places, *selection) = ([int(x) for x in summary[3 + n * r: 3 + n * (r + 1)]] for r in range(8))
    tree.snapshot = selection
    nodes = [node for node, flag in enumerate(flags) if flag]
    return Frontier(nodes, [settings.budget - places[node] for node in nodes], *summary[:3])


def levels_worth_drafting(expected: float, cost_ratio: float, max_levels: int) -> int:
    """Draft passes that maximise the expected tokens per unit of time of a chain whose every token is accepted
    with probability `expected`: argmax over d of `(1 + sum_{k<=d} expected^k) / (1 + cost_ratio * d)`."""
    best, best_rate, tokens = 1, 0.0, 1.0
    for levels in range(1, max_levels + 1):
        tokens += expected ** levels
        rate = tokens / (1.0 + cost_ratio * levels)
        if rate > best_rate:
            best, best_rate = levels, rate
    return best


def grow_tree(root_token: torch.Tensor, read: Reader, settings: GrowthSettings,
              draw: Drawer = draw_children) -> tuple[DraftTree, dict[int, torch.Tensor]]:
    """Grow one round's tree level by level (see the module docstring); returns it with the draft's q at every
    node it read. `read` runs the draft (a model, or a script in tests), `draw` draws children.

    With a cost ratio, greedy decoding stops at the first level that cannot pay for itself
    (`worth_another_level`, which looks at the values of the tree grown so far). Under sampling that look would let
    a node's own draws decide whether rivals that could displace it get grown, so the number of levels is fixed
    from the root's distribution alone, before anything is drawn (`levels_worth_drafting`; the root's expected
    acceptance reaches the host with the first level's frontier: no sync of its own).
    """
    tree = DraftTree(root_token)
    probs: dict[int, torch.Tensor] = {}
    nodes, counts, levels, max_levels = [ROOT], [settings.budget], 0, settings.max_depth
    while True:
        scores, hidden = read(tree, nodes)
        width = min(max(counts), scores.shape[-1])
        positions = children_to_keep(counts, width)  # the root keeps all its children: no copy for it
        staged = to_device(nodes + positions, tree.device) if levels else torch.full((1,), ROOT, device=tree.device)
        index, keep = staged[: len(nodes)], (staged[len(nodes):] if positions else None)
        for node, row in zip(nodes, expand(tree, index, scores, hidden, settings, draw, width, keep)):
            probs[node] = row
        levels += 1
        pace = settings.cost_ratio is not None and settings.do_sample and levels == 1  # levels from the root's q
        level = frontier(tree, settings, (probs[ROOT].double() ** 2).sum() if pace else None)
        if pace:
            max_levels = levels_worth_drafting(level.also, settings.cost_ratio, settings.max_depth)
        nodes, counts = level.nodes, level.counts
        if not nodes or levels >= max_levels or (settings.cost_ratio is not None and not settings.do_sample
                                                 and not worth_another_level(level.tree_value, level.open_value,
                                                                             levels, settings.cost_ratio)):
            return tree, probs
