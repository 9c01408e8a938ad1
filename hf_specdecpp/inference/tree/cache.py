"""Keeping only the accepted path's keys and values after a tree was verified."""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def check_gatherable(cache, role: str) -> None:
    """Tree decoding gathers cache positions: it needs a DynamicCache of plain (full-attention) layers."""
    if not isinstance(cache, DynamicCache):
        raise ValueError(
            f"DySpec tree decoding needs a DynamicCache for the {role} (got {type(cache).__name__}): it gathers the "
            "accepted positions after each round. Use the default cache (no cache_implementation)."
        )
    for layer in cache.layers:
        if type(layer) is not DynamicLayer:
            raise ValueError(
                f"DySpec tree decoding cannot gather positions of a {type(layer).__name__} in the {role}'s cache "
                "(sliding-window or other special cache layers); only full-attention DynamicLayer caches work."
            )


def compact_cache(cache: DynamicCache, keep: torch.Tensor) -> None:
    """Keep only the cache positions `keep` (1D, increasing), in that order, in every layer."""
    for layer in cache.layers:
        if layer.is_initialized and layer.keys.numel() > 0:
            index = keep.to(layer.keys.device)
            layer.keys = layer.keys.index_select(-2, index)
            layer.values = layer.values.index_select(-2, index)
