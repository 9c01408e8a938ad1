"""The draft token tree of one round, and the attention masks and position ids that let a model read it.

Node 0 is the root: the last verified token, which is the last token of the prefix. Every other node is a
drafted token; its parent is the token it continues. A model reads the tree in one forward pass when each
node attends to the whole prefix and to its own ancestors only, at position `position(root) + depth`.
"""

from __future__ import annotations

import torch

ROOT = 0


class DraftTree:
    """Nodes in insertion order with their parent, depth, sibling rank and the draft's data at each node.

    Per node: `tokens`, `parents` (-1 for the root), `depths`, `ranks` (0 for the first child of its parent,
    1 for the second, ...), `children` (in rank order), `values` (the growth policy's estimate that the node
    is on the accepted path), and, once the draft has read the node ("expanded" it): `probs` (the processed
    draft distribution its children are drawn from), `accept` (a drafted-token head's prediction for the node),
    `first_child_accept` (a producing-state head's prediction for the node's first candidate child) and `slots`
    (the node's position in the draft's KV cache).
    """

    def __init__(self, root_token: int):
        self.tokens: list[int] = [root_token]
        self.parents: list[int] = [-1]
        self.depths: list[int] = [0]
        self.ranks: list[int] = [0]
        self.children: list[list[int]] = [[]]
        self.values: list[float] = [1.0]
        self.probs: list[torch.Tensor | None] = [None]
        self.accept: list[float | None] = [None]
        self.first_child_accept: list[float | None] = [None]
        self.slots: list[int | None] = [None]
        # candidate children of an expanded node, in the order they are drawn, and their draft probabilities
        self.child_tokens: list[list[int] | None] = [None]
        self.child_probs: list[list[float] | None] = [None]

    @property
    def num_nodes(self) -> int:
        """Drafted nodes (the root is not counted)."""
        return len(self.tokens) - 1

    def add(self, parent: int, token: int, value: float) -> int:
        """Append `token` as the next child of `parent`; return the new node's index."""
        node = len(self.tokens)
        self.tokens.append(token)
        self.parents.append(parent)
        self.depths.append(self.depths[parent] + 1)
        self.ranks.append(len(self.children[parent]))
        self.children[parent].append(node)
        self.children.append([])
        self.values.append(value)
        self.probs.append(None)
        self.accept.append(None)
        self.first_child_accept.append(None)
        self.slots.append(None)
        self.child_tokens.append(None)
        self.child_probs.append(None)
        return node

    def path(self, node: int) -> list[int]:
        """The drafted nodes from the root's child down to `node` (empty for the root)."""
        nodes = []
        while node != ROOT:
            nodes.append(node)
            node = self.parents[node]
        return nodes[::-1]

    def path_tokens(self, node: int) -> list[int]:
        return [self.tokens[i] for i in self.path(node)]

    def child_with_token(self, node: int, token: int) -> int | None:
        for child in self.children[node]:
            if self.tokens[child] == token:
                return child
        return None


def prefix_layout(padding_mask: torch.Tensor | None, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Which prefix positions may be attended to `(length,)` and their position ids `(length,)`.

    `padding_mask` is the 2D prompt mask `(1, prompt_length)` (None when nothing is padded); every token after
    the prompt is real. Position ids count real tokens only, as transformers does for padded prompts.
    """
    visible = torch.ones(length, dtype=torch.bool, device=device)
    if padding_mask is not None:
        visible[: padding_mask.shape[1]] = padding_mask[0].to(device=device, dtype=torch.bool)
    positions = (visible.long().cumsum(-1) - 1).clamp(min=0)
    return visible, positions


def causal_rows(visible: torch.Tensor, start: int, kv_length: int) -> torch.Tensor:
    """Allowed keys `(len(visible) - start, kv_length)` for the prefix tokens `start...` fed in one pass."""
    length = visible.shape[0]
    columns = torch.arange(kv_length, device=visible.device)
    rows = torch.arange(start, length, device=visible.device)
    allowed = columns[None, :] <= rows[:, None]
    allowed[:, :length] &= visible[None, :]
    allowed[torch.arange(rows.shape[0]), rows] = True  # a padded token sees itself: no fully masked row
    return allowed


def node_rows(
    tree: DraftTree, nodes: list[int], slots: list[int | None], visible: torch.Tensor, kv_length: int
) -> torch.Tensor:
    """Allowed keys `(len(nodes), kv_length)` for tree nodes: the prefix plus their ancestors and themselves.

    `slots[i]` is the key position of node i in this model's cache (or in this forward pass).
    """
    allowed = torch.zeros(len(nodes), kv_length, dtype=torch.bool, device=visible.device)
    allowed[:, : visible.shape[0]] = visible
    for row, node in enumerate(nodes):
        allowed[row, [slots[i] for i in tree.path(node)]] = True
    return allowed


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A `(1, 1, queries, keys)` float mask: 0 where allowed, the dtype's minimum elsewhere.

    transformers passes a 4D mask to the attention functions as-is; eager attention adds it to the scores and
    SDPA accepts it as an additive mask, so a float mask works with both (a boolean one only with SDPA).
    """
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def node_positions(tree: DraftTree, nodes: list[int], root_position: torch.Tensor) -> torch.Tensor:
    """Position ids of `nodes`: the root's position plus their depth."""
    depths = torch.tensor([tree.depths[i] for i in nodes], dtype=torch.long, device=root_position.device)
    return root_position + depths
