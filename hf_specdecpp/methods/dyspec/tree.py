"""The draft token tree of one round, kept in device tensors.

Node 0 is the root: the last verified token. Every other node is a drafted token; its parent is the token it
continues, its `rank` the order in which it was drawn among its parent's children. Per node the tree keeps:

- `reach`: the estimated probability that verification reaches the node's slot (its parent is accepted and
  every earlier sibling rejected);
- `own`: the estimated probability that the node is accepted once reached (it may depend on its token);
- `value`: the estimate the tree is grown by. Values strictly decrease from a node to its children and from a
  sibling to the next, so the best `budget` nodes always form a tree whose children are a prefix of the draws;
- `slot`: the node's column in the draft's KV cache once the draft has read it (-1 before).

`ancestors[i, j]` marks the nodes on the path from the root to node i (both included).
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
        self.ancestors = torch.ones((1, 1), dtype=torch.bool, device=device)
        self.num_nodes = 1
        self.snapshot: list[list[int]] | None = None  # `selection_rows` as read with the last level (growth.py)

    def add_children(self, parents: torch.LongTensor, tokens: torch.LongTensor, reach: torch.Tensor,
                     own: torch.Tensor, value: torch.Tensor) -> torch.LongTensor:
        """Append `C` candidate children for each of the `F` nodes `parents` (`(F, C)` tensors, ranks 0..C-1, in
        draw order); `value` must already be below the parent's and the previous sibling's. Returns the new
        node indices `(F, C)`."""
        count, width = tokens.shape
        new = torch.arange(self.num_nodes, self.num_nodes + count * width, device=self.device).reshape(count, width)
        flat_parents = parents[:, None].expand(count, width).reshape(-1)
        self.tokens = torch.cat([self.tokens, tokens.reshape(-1)])
        self.parents = torch.cat([self.parents, flat_parents])
        self.depths = torch.cat([self.depths, self.depths[flat_parents] + 1])
        self.ranks = torch.cat([self.ranks, torch.arange(width, device=self.device).repeat(count)])
        self.reach = torch.cat([self.reach, reach.reshape(-1).to(self.reach.dtype)])
        self.own = torch.cat([self.own, own.reshape(-1).to(self.own.dtype)])
        self.value = torch.cat([self.value, value.reshape(-1).to(self.value.dtype)])
        self.slots = torch.cat([self.slots, self.slots.new_full((count * width,), -1)])
        self.expanded = torch.cat([self.expanded, self.expanded.new_zeros(count * width)])
        total = self.num_nodes + count * width
        ancestors = torch.zeros((total, total), dtype=torch.bool, device=self.device)
        ancestors[: self.num_nodes, : self.num_nodes] = self.ancestors
        ancestors[self.num_nodes:, : self.num_nodes] = self.ancestors[flat_parents]
        ancestors[new.reshape(-1), new.reshape(-1)] = True
        self.ancestors = ancestors
        self.num_nodes = total
        self.snapshot = None
        return new

    def selection_rows(self, chosen: torch.Tensor) -> torch.Tensor:
        """`(6, N)`: what `HostTree` reads of the selection `chosen`: the mask, tokens, parents, ranks, slots and
        depths of every node."""
        return torch.stack([chosen.long(), self.tokens, self.parents, self.ranks, self.slots, self.depths])

    def best(self, budget: int) -> torch.Tensor:
        """Boolean `(N,)`: the root and the `budget` drafted nodes of highest value (values > 0 only)."""
        chosen = torch.zeros(self.num_nodes, dtype=torch.bool, device=self.device)
        chosen[ROOT] = True
        drafted = self.value[1:]
        if drafted.numel():
            top = torch.topk(drafted, k=min(budget, drafted.numel()))
            chosen[top.indices + 1] = top.values > 0  # a scatter, not a boolean index: no host sync
        return chosen


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
