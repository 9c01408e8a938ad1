"""Attention masks and position ids for what the loops feed a model: padded rows and token trees.

Positions count real tokens only (padding gets none), as generate() does for left-padded prompts. A token tree
is read in one pass when every node attends to the prefix and to its own ancestors only, at position
`position(root) + depth`; such a mask is 4D and is passed to the model as-is, so it is additive (0 where
attending is allowed, the dtype's minimum elsewhere): eager attention adds it, SDPA takes it as a float mask.
"""

from __future__ import annotations

import torch

from .device import to_device


def fed_positions(cached: list[int], fed_real: torch.Tensor) -> torch.LongTensor:
    """Position ids `(B, n)` of `n` newly fed columns: row b has `cached[b]` real tokens before them and
    `fed_real[b]` marks which fed columns are real (padding repeats the previous position)."""
    start = to_device(cached, fed_real.device)[:, None]
    return (start + fed_real.long().cumsum(dim=1) - 1).clamp(min=0)


def fed_real_mask(feed: int, lengths: list[int], device: torch.device) -> torch.Tensor:
    """`(B, feed)`: which of the last `feed` columns of a right-aligned layout hold real tokens of each row."""
    columns = torch.arange(feed, device=device)[None, :]
    return columns >= (feed - to_device(lengths, device))[:, None]


def padded_mask(pads: list[int], columns: int, fed_real: torch.Tensor) -> torch.Tensor:
    """The 2D attention mask `(B, columns + n)` over a cache whose row b starts with `pads[b]` padding columns,
    followed by `n` fed columns marked real by `fed_real`."""
    device = fed_real.device
    cache_part = torch.arange(columns, device=device)[None, :] >= to_device(pads, device)[:, None]
    return torch.cat([cache_part, fed_real], dim=1).long()


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A `(1, 1, queries, keys)` float mask from a boolean `(queries, keys)` one."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def tree_allowed(prefix_visible: torch.Tensor, query_rows: torch.Tensor, key_slots: torch.LongTensor,
                 total_columns: int) -> torch.Tensor:
    """Boolean `(queries, total_columns)`: every query sees the prefix columns marked in `prefix_visible` (its
    length is the prefix width) and the tree columns `key_slots[k]` where `query_rows[q, k]` is set (its
    ancestors and itself)."""
    allowed = torch.zeros((query_rows.shape[0], total_columns), dtype=torch.bool, device=query_rows.device)
    allowed[:, : prefix_visible.shape[0]] = prefix_visible
    allowed[:, key_slots] = query_rows
    return allowed


def causal_allowed(queries: int, keys: int, device: torch.device) -> torch.Tensor:
    """Boolean `(queries, keys)` causal mask for the last `queries` of `keys` positions."""
    rows = torch.arange(keys - queries, keys, device=device)[:, None]
    return torch.arange(keys, device=device)[None, :] <= rows
