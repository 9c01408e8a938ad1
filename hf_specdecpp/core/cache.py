"""KV caches during speculative decoding: creating them, rolling back rejected drafts, re-aligning batch rows.

Two layouts are used:

- one sequence: the model's own cache (built from its config, so sliding-window and linear-attention layers
  keep their compact form) with past recording activated, rolled back with `crop(-n)` after every round;
- a batch: every row's tokens sit right-aligned in a plain cache of full-attention layers, left-padded; rows
  that accept different numbers of drafts are re-aligned by a gather after each round (`realign`). Sliding
  windows stay exact because the attention mask applies them by slot distance, which equals the token
  distance within a right-aligned row; linear-attention (recurrent) layers cannot be re-aligned per row and
  are refused for batches.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache

from .compat import activate_past_recording, cache_is_croppable, cache_layers

FULL_LAYER_TYPES = ("DynamicLayer",)
WINDOW_LAYER_TYPES = ("DynamicSlidingWindowLayer",)


class CacheSupportError(ValueError):
    """The model's cache cannot do what speculative decoding needs (the message says what is missing)."""


def new_batch_cache() -> DynamicCache:
    """A cache of plain full-attention layers (created lazily by the first forward pass)."""
    return DynamicCache()


def check_batchable(model: torch.nn.Module, role: str) -> None:
    """Batches need every layer to hold per-position keys/values: refuse recurrent (linear-attention, conv) layers."""
    probe = DynamicCache(config=model.config)
    odd = sorted({type(layer).__name__ for layer in cache_layers(probe)
                  if type(layer).__name__ not in FULL_LAYER_TYPES + WINDOW_LAYER_TYPES})
    if odd:
        raise CacheSupportError(
            f"The {role} model ({type(model).__name__}) has cache layers {odd} (linear attention or convolution "
            "states), which cannot be rolled back row by row: speculative decoding of a batch needs attention-only "
            "models. Call generate() once per prompt for this model.")


def prepare_single_cache(cache: Any, role: str) -> Any:
    """Make a model-created cache ready for rollback: activate past recording, check that it can crop."""
    activate_past_recording(cache)
    if not cache_is_croppable(cache):
        raise CacheSupportError(
            f"The {role}'s cache ({type(cache).__name__}) cannot be rolled back after a rejected draft on this "
            "transformers release (static and quantized caches cannot be cropped before 5.24). Use the default "
            "dynamic cache (no cache_implementation), or a transformers release whose static cache crops.")
    return cache


def rollback(cache: Any, tokens: int) -> None:
    """Remove the newest `tokens` positions (0 still lets recording layers drop states they no longer need)."""
    cache.crop(-int(tokens))


def realign(cache: Any, pads: list[int], keep: list[int]) -> list[int]:
    """Keep the first `keep[b]` real positions of every row, right-aligned; return the new left padding per row.

    Row b's real positions occupy columns `pads[b]:` of the cache before the call. Afterwards the cache is
    `max(keep)` columns wide and row b's kept positions fill its last `keep[b]` columns; the columns to their
    left are padding (masked by the caller's attention mask). Index arithmetic runs on the host: no sync.
    """
    width = max(keep)
    new_pads = [width - k for k in keep]
    sources = [[max(p + c - n, 0) for c in range(width)] for p, n in zip(pads, new_pads)]
    plain_crop = all(row == list(range(width)) for row in sources)
    index = None
    for layer in cache_layers(cache):
        if not getattr(layer, "is_initialized", True) or layer.keys is None or layer.keys.numel() == 0:
            continue
        if plain_crop:  # every row keeps the same leading columns
            layer.keys, layer.values = layer.keys[..., :width, :], layer.values[..., :width, :]
            continue
        if index is None or index.device != layer.keys.device:
            index = torch.tensor(sources, dtype=torch.long).to(layer.keys.device, non_blocking=True)
        gather = index[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[-1])
        layer.keys = layer.keys.gather(2, gather)
        layer.values = layer.values.gather(2, gather)
    return new_pads


def select_rows(cache: Any, rows: torch.LongTensor) -> None:
    """Keep only the batch rows `rows` of every layer (finished rows leave the batch)."""
    for layer in cache_layers(cache):
        if getattr(layer, "is_initialized", True) and layer.keys is not None and layer.keys.numel() > 0:
            index = rows.to(layer.keys.device)
            layer.keys, layer.values = layer.keys.index_select(0, index), layer.values.index_select(0, index)


def check_gatherable(cache: Any, role: str) -> None:
    """Tree decoding gathers cache positions: it needs a cache of plain full-attention layers."""
    for layer in cache_layers(cache):
        if type(layer).__name__ not in FULL_LAYER_TYPES:
            raise CacheSupportError(
                f"DySpec tree decoding cannot gather positions of a {type(layer).__name__} in the {role}'s cache "
                "(sliding-window, static or recurrent layers); only full-attention dynamic caches work.")


def compact(cache: Any, keep: torch.LongTensor) -> None:
    """Keep only the cache positions `keep` (1D, increasing), in that order, in every layer (one sequence)."""
    for layer in cache_layers(cache):
        if getattr(layer, "is_initialized", True) and layer.keys is not None and layer.keys.numel() > 0:
            index = keep.to(layer.keys.device)
            layer.keys = layer.keys.index_select(-2, index)
            layer.values = layer.values.index_select(-2, index)
