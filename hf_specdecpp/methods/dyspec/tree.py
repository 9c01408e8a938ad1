"""The draft token tree of one round, kept in device tensors.

Node 0 is the root: the last verified token. Every other node is a drafted token; its parent is the token it
continues, its `rank` the order in which it was drawn among its parent's children. Per node the tree keeps:

- `reach`: the estimated probability that verification reaches the node's slot (its parent is accepted and
  every earlier sibling rejected);
- `own`: the estimated probability that the node is accepted once reached (it may depend on its token);
- `value`: the estimate the tree is grown by. Values strictly decrease from a node to its children and from a
  sibling to the next, so the best `budget` nodes always form a tree whose children are a prefix of the draws;
- `slot`: the node's column in the draft's KV cache once the draft has read it (-1 before).

`ancestors[i, j]` marks the nodes on the path from the root to node i (both included). It is a view of a buffer
with spare capacity: a new node's row is its parent's row plus itself, written once when the node is added, so
a level costs work for its new rows only (the buffer doubles when full, an amortised constant per node).
"""

from __future__ import annotations

import torch

from ...core.device import to_device

ROOT = 0
SHRINK = 1.0 - 1e-6
"""Each step down (to a child) or across (to the next sibling) multiplies the value bound by this, making ties
between a node and its children or later siblings impossible."""


class DraftTree:
    """Nodes in creation order (parents before children); `num_nodes` counts the root too."""

    def __init__(self, root_token: torch.Tensor):
        device = root_token.device
        self.device = device
        self.tokens = root_token.reshape(1).long()
        self.parents = torch.full((1,), -1, dtype=torch.long, device=device)
        self.depths = torch.zeros(1, dtype=torch.long, device=device)
        self.ranks = torch.zeros(1, dtype=torch.long, device=device)
        self.reach = torch.ones(1, device=device)
        self.own = torch.ones(1, device=device)
        self.value = torch.ones(1, device=device, dtype=torch.float64)  # exact ordering of close values
        self.slots = torch.full((1,), -1, dtype=torch.long, device=device)
        self.expanded = torch.zeros(1, dtype=torch.bool, device=device)
        self._ancestors = torch.ones((1, 1), dtype=torch.bool, device=device)  # [:num_nodes, :num_nodes] in use
        self.num_nodes = 1
        self.snapshot: list[list[int]] | None = None  # `selection_rows` as read with the last level (growth.py)

    @property
    def ancestors(self) -> torch.Tensor:
        """`(N, N)` bool: `ancestors[i, j]` marks the path from the root to node i (a view, not a copy)."""
        return self._ancestors[: self.num_nodes, : self.num_nodes]

    def add_children(self, parents: torch.LongTensor, tokens: torch.LongTensor, reach: torch.Tensor,
                     own: torch.Tensor, value: torch.Tensor) -> torch.LongTensor:
        """Append `C` candidate children for each of the `F` nodes `parents` (`(F, C)` tensors, ranks 0..C-1, in
        draw order); `value` must already be below the parent's and the previous sibling's. Returns the new
        node indices `(F, C)`."""
        count, width = tokens.shape
        ranks = torch.arange(width, device=self.device).repeat(count)
        return self.add_nodes(parents[:, None].expand(count, width).reshape(-1), tokens.reshape(-1), ranks,
                              reach.reshape(-1), own.reshape(-1), value.reshape(-1)).reshape(count, width)

    def add_nodes(self, parents: torch.LongTensor, tokens: torch.LongTensor, ranks: torch.LongTensor,
                  reach: torch.Tensor, own: torch.Tensor, value: torch.Tensor) -> torch.LongTensor:
        """Append `M` nodes (`(M,)` tensors: parent, token, rank among the parent's children, estimates), the
        children of one parent contiguous and in draw order. Returns the new node indices `(M,)`."""
        old, added = self.num_nodes, tokens.shape[0]
        new = torch.arange(old, old + added, device=self.device)
        self.tokens = torch.cat([self.tokens, tokens])
        self.parents = torch.cat([self.parents, parents])
        self.depths = torch.cat([self.depths, self.depths[parents] + 1])
        self.ranks = torch.cat([self.ranks, ranks])
        self.reach = torch.cat([self.reach, reach.to(self.reach.dtype)])
        self.own = torch.cat([self.own, own.to(self.own.dtype)])
        self.value = torch.cat([self.value, value.to(self.value.dtype)])
        self.slots = torch.cat([self.slots, self.slots.new_full((added,), -1)])
        self.expanded = torch.cat([self.expanded, self.expanded.new_zeros(added)])
        self._reserve(old + added)
        self._ancestors[old: old + added, :old] = self._ancestors[parents, :old]  # the parent's path ...
        self._ancestors[new, new] = True  # ... and the node itself; no earlier row is read again or rewritten
        self.num_nodes = old + added
        self.snapshot = None
        return new

    def _reserve(self, total: int) -> None:
        """Room for `total` nodes in the ancestor buffer (doubling it when full; rows past `num_nodes` stay 0)."""
        capacity = self._ancestors.shape[0]
        if total <= capacity:
            return
        grown = torch.zeros((max(total, 2 * capacity),) * 2, dtype=torch.bool, device=self.device)
        grown[: self.num_nodes, : self.num_nodes] = self.ancestors
        self._ancestors = grown

    def selection_rows(self, chosen: torch.Tensor) -> torch.Tensor:
        """`(6, N)`: what `HostTree` reads of the selection `chosen`: the mask, tokens, parents, ranks, slots and
        depths of every node."""
        return torch.stack([chosen.long(), self.tokens, self.parents, self.ranks, self.slots, self.depths])

    def best(self, budget: int) -> torch.Tensor:
        """Boolean `(N,)`: the root and the `budget` drafted nodes of highest value (values > 0 only)."""
        return self.ranked(budget)[0]

    def ranked(self, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(`best(budget)`, each node's place `(N,)` in that selection: 1 for the drafted node of highest value,
        ..., 0 for the root and the nodes not selected)."""
        chosen = torch.zeros(self.num_nodes, dtype=torch.bool, device=self.device)
        chosen[ROOT] = True
        place = torch.zeros(self.num_nodes, dtype=torch.long, device=self.device)
        drafted = self.value[1:]
        if drafted.numel():
            top = torch.topk(drafted, k=min(budget, drafted.numel()))  # sorted: highest first
            kept = top.values > 0
            chosen[top.indices + 1] = kept  # a scatter, not a boolean index: no host sync
            place[top.indices + 1] = torch.arange(1, top.indices.numel() + 1, device=self.device) * kept
        return chosen, place


class HostTree:
    """The selected tree on the host, once per round: what verification walks and the caches keep.

    Args:
        tree: the grown tree.
        chosen: the selection `(N,)`; None takes the one growth read with its last level (`tree.snapshot`, no
            further host sync).
    """

    def __init__(self, tree: DraftTree, chosen: torch.Tensor | None = None):
        if chosen is None:
            if tree.snapshot is None:
                raise ValueError("HostTree(tree) needs the selection growth read last (tree.snapshot); pass chosen=")
            data = tree.snapshot
        else:
            data = tree.selection_rows(chosen).tolist()  # one host sync for the whole structure
        keep = [i for i, flag in enumerate(data[0]) if flag]
        self.nodes = keep
        self.tokens, parents, self.ranks, self.slots, self.depths = ([row[i] for i in keep] for row in data[1:])
        position = {node: i for i, node in enumerate(self.nodes)}
        self.parents = [position.get(p, -1) for p in parents]
        self.children: list[list[int]] = [[] for _ in self.nodes]
        for i in sorted(range(1, len(self.nodes)), key=lambda i: self.ranks[i]):
            self.children[self.parents[i]].append(i)
        self.index = to_device(keep, tree.device)  # selected nodes, root first

    @property
    def num_drafted(self) -> int:
        return len(self.nodes) - 1

    def path(self, i: int) -> list[int]:
        """Selected-node positions from the root's child down to `i` (empty for the root)."""
        out = []
        while i > 0:
            out.append(i)
            i = self.parents[i]
        return out[::-1]

    def path_tokens(self, i: int) -> list[int]:
        return [self.tokens[j] for j in self.path(i)]
