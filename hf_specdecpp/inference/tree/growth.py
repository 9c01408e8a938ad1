"""Growing a draft tree under a node budget, best estimate first (DySpec), optionally guided by the head.

Each node's value estimates the probability that the target accepts the path to it. The tree that maximises
the sum of values under a node budget (the expected number of accepted drafted tokens) is built greedily:
keep a heap of candidate nodes, add the best one, then offer its first child and its next sibling. A
node's value never exceeds its parent's, so this best-first order is optimal for the estimate.

How a candidate child `x` of node `u` (drawn as u's k-th child) is valued:

- DySpec (no head): `value(u) * q_u(x)`, the draft probability. It is the probability that the target's token
  at `u` is `x` when target and draft agree (p = q), whatever order the children were drawn in.
- With an acceptance head: the head predicts `a(x)`, the probability that the target accepts `x` as the
  chain continuation of `u`, i.e. when `x` is tried first. That is exactly the first child's situation, so
  the first child's value becomes `value(u) * a(x)`. A later child is reached only when the first one is
  rejected; the rejected mass `1 - a(x_1)` is shared among the other candidates in proportion to their draft
  probabilities (the distribution the later children are drawn from): `value(u) * (1 - a(x_1)) * q_u(x) /
  (1 - q_u(x_1))`. With `a = q` both rules reduce to DySpec's.
- A drafted-token head reads the draft's hidden state at `x`, which exists only after the draft has read `x`
  (the one-step lag of SpecDec++). So a first child is itself selected by its draft value and its head value
  then ranks its descendants and siblings. A first child that is never read (a leaf) keeps the draft estimate.
  A producing-state head scores the first child from `u`'s own state as soon as `u` is read (no lag).
"""

from __future__ import annotations

import heapq
import itertools
from typing import Callable

import torch

from .tree import ROOT, DraftTree


def child_candidates(probs: torch.Tensor, max_children: int, do_sample: bool) -> tuple[list[int], list[float]]:
    """The children a node may get, in the order they are drawn, and their draft probabilities.

    Greedy decoding takes the most probable tokens. Sampling draws WITHOUT replacement from `probs`: the
    Gumbel-top-k trick (sort `log q + Gumbel noise`) yields the same order as drawing one token, removing it,
    renormalising and drawing again. Tokens of probability zero are never drawn.
    """
    keys = probs.log()
    if do_sample:
        keys = keys - torch.empty_like(probs).exponential_().log()
    top = torch.topk(keys, k=min(max_children, probs.shape[-1])).indices
    chosen = probs[top]
    tokens, weights = top.tolist(), chosen.tolist()
    count = sum(1 for w in weights if w > 0)
    return tokens[:count], weights[:count]


def child_value(tree: DraftTree, parent: int, rank: int) -> float:
    """The estimated value of the `rank`-th candidate child of `parent` (see the module docstring)."""
    probability = tree.child_probs[parent][rank]
    first_accept = tree.first_child_accept[parent]
    if rank == 0:
        return tree.values[parent] * (probability if first_accept is None else first_accept)
    if first_accept is None:
        first_accept = tree.accept[tree.children[parent][0]]
    if first_accept is None:
        return tree.values[parent] * probability
    first_probability = tree.child_probs[parent][0]
    rest = 1.0 - first_probability
    share = probability / rest if rest > 0 else 0.0
    return tree.values[parent] * (1.0 - first_accept) * share


def worth_adding(tree: DraftTree, value: float, cost_ratio: float) -> bool:
    """Does one more node of estimated `value` raise the expected tokens per unit of time of this round?

    A round yields `1 + sum(values)` tokens in expectation (the accepted nodes plus the target's own token) and
    costs one target pass plus one draft pass per node; `cost_ratio` is draft time / target time. Taking the
    target pass as flat in the tree size (true for small trees on a GPU), adding a node helps exactly when
    `value * (1 + n * cost_ratio) > (1 + sum(values)) * cost_ratio`, n being the current number of nodes.
    """
    n = tree.num_nodes
    return value * (1.0 + n * cost_ratio) > (1.0 + sum(tree.values[1:])) * cost_ratio


def grow_tree(
    tree: DraftTree,
    budget: int,
    expand: Callable[[int], None],
    expandable: Callable[[int], bool],
    cost_ratio: float | None = None,
) -> DraftTree:
    """Add up to `budget` nodes to `tree`, best value first.

    `expand(node)` runs the draft on `node` and records `probs`, `child_tokens`, `child_probs` (and `accept`
    with a head) on the tree; `expandable(node)` says whether a node may get children (depth limit, EOS).
    The last node added is never expanded: its children could not be added anyway. With `cost_ratio`, growth
    also stops at the first best candidate that is not `worth_adding` (the budget then varies per round).
    """
    heap: list[tuple[float, int, int, int]] = []
    order = itertools.count()  # ties go to the earlier candidate

    def offer(parent: int, rank: int) -> None:
        candidates = tree.child_tokens[parent]
        if candidates is not None and rank < len(candidates):
            heapq.heappush(heap, (-child_value(tree, parent, rank), next(order), parent, rank))

    if budget < 1 or not expandable(ROOT):
        return tree
    expand(ROOT)
    offer(ROOT, 0)
    while heap and tree.num_nodes < budget:
        negative_value, _, parent, rank = heapq.heappop(heap)
        if cost_ratio is not None and not worth_adding(tree, -negative_value, cost_ratio):
            break
        node = tree.add(parent, tree.child_tokens[parent][rank], -negative_value)
        if tree.num_nodes == budget:
            break
        if expandable(node):
            expand(node)
            if rank == 0 and tree.accept[node] is not None:
                tree.values[node] = tree.values[parent] * tree.accept[node]
            offer(node, 0)
        offer(parent, rank + 1)
    return tree
