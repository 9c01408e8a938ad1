"""KV caches during speculative decoding: creating them, rolling back rejected drafts, re-aligning batch rows.

Attention-only models (full or sliding-window attention) get a plain cache of full-attention layers of the
loop's own: it rolls back with `crop(-n)` on every supported transformers release, and batch rows in it can be
re-aligned by a gather (`realign`). Sliding windows stay exact: transformers' mask applies a window by slot
distance, which equals the token distance within a right-aligned row (the cache keeps the whole history
instead of a window: more memory, no special rollback). Models with convolution or linear-attention states
(LFM2 and similar) keep their own cache, with past recording activated so that a rejected draft can be rolled
back; they decode one sequence at a time, and recurrent states that cannot be rolled back are refused.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache

from .compat import activate_past_recording, cache_is_croppable, cache_layers
from .device import to_device

FULL_LAYER_TYPES = ("DynamicLayer",)
WINDOW_LAYER_TYPES = ("DynamicSlidingWindowLayer",)


class CacheSupportError(ValueError):
    """The model's cache cannot do what speculative decoding needs (the message says what is missing)."""


def new_batch_cache() -> DynamicCache:
    """A cache of plain full-attention layers (created lazily by the first forward pass)."""
    return DynamicCache()


def state_layer_types(model: torch.nn.Module) -> list[str]:
    """Names of the cache layers of `model` that hold convolution/recurrent states instead of keys and values."""
    probe = DynamicCache(config=model.config)
    return sorted({type(layer).__name__ for layer in cache_layers(probe)
                   if type(layer).__name__ not in FULL_LAYER_TYPES + WINDOW_LAYER_TYPES})


def check_loop_cache(cache: Any, role: str) -> None:
    """A cache generate() prepared for our loop must be a dynamic one: refuse static or quantized requests."""
    if cache is None:
        return
    names = {type(layer).__name__ for layer in cache_layers(cache)}
    if not type(cache).__name__.startswith("Dynamic") or any(n.startswith(("Static", "Quant")) for n in names):
        raise CacheSupportError(
            f"hf_specdecpp's own decoding loop manages the {role}'s cache and needs a dynamic one, got "
            f"{type(cache).__name__}. Remove cache_implementation=..., or, for a static cache with a compiled verify "
            "pass, use candidate_generator= for one sequence with transformers >= 5.24 (its assisted decoding).")


def prepare_single_cache(cache: Any, role: str) -> Any:
    """Make a model-built cache with state layers ready for rollback: activate past recording, check it can crop."""
    activate_past_recording(cache)
    if not cache_is_croppable(cache):
        raise CacheSupportError(
            f"The {role}'s cache ({type(cache).__name__}) cannot be rolled back after a rejected draft (recurrent "
            "states such as gated-delta or Mamba layers, or a cache type this transformers release cannot crop). "
            "Speculative decoding needs a draft and a target whose caches can drop rejected tokens.")
    return cache


def rollback(cache: Any, tokens: int) -> None:
    """Remove the newest `tokens` positions. `crop` is only ever called with a negative count: `crop(0)` emptied
    a cache before transformers 5.14 and a positive count meant "keep n" before 5.20."""
    if tokens > 0:
        cache.crop(-int(tokens))


def realign(cache: Any, pads: list[int], keep: list[int]) -> list[int]:
    """Keep the first `keep[b]` real positions of every row, right-aligned; return the new left padding per row.

    Row b's real positions occupy columns `pads[b]:` of the cache before the call. Afterwards the cache is
    `max(keep)` columns wide and row b's kept positions fill its last `keep[b]` columns; the columns to their
    left are padding (masked by the caller's attention mask). Rows whose padding does not change are a plain
    crop; otherwise one gather per layer, its index built on the device from the rows' shifts (B integers sent
    without a sync: `to_device`).
    """
    width = max(keep)
    new_pads = [width - k for k in keep]
    layers = [layer for layer in cache_layers(cache)
              if getattr(layer, "is_initialized", True) and layer.keys is not None and layer.keys.numel() > 0]
    if new_pads == list(pads):  # every row keeps the same leading columns
        for layer in layers:
            layer.keys, layer.values = layer.keys[..., :width, :], layer.values[..., :width, :]
        return new_pads
    index = None
    for layer in layers:
        if index is None:
            shifts = to_device([p - n for p, n in zip(pads, new_pads)], layer.keys.device)
            index = (shifts[:, None] + torch.arange(width, device=layer.keys.device)[None, :]).clamp(min=0)
        index = index.to(layer.keys.device)  # a device-to-device copy where a dispatched model spans devices
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


def compact(cache: Any, prefix: int, positions: list[int]) -> None:
    """Keep the first `prefix` cache positions and then `positions` (increasing, all >= `prefix`), in that order,
    in every layer (one sequence); drop the rest.

    The kept positions are copied down in place and the layer cropped: the work is proportional to
    `len(positions)`, not to the sequence (the prefix is not touched). An accepted path that already follows the
    prefix is a plain crop.
    """
    width = prefix + len(positions)
    moved = positions != list(range(prefix, width))
    index = None
    for layer in cache_layers(cache):
        if not getattr(layer, "is_initialized", True) or layer.keys is None or layer.keys.numel() == 0:
            continue
        if moved:
            index = to_device(positions, layer.keys.device) if index is None else index.to(layer.keys.device)
            layer.keys[..., prefix:width, :] = layer.keys.index_select(-2, index)
            layer.values[..., prefix:width, :] = layer.values.index_select(-2, index)
        layer.keys, layer.values = layer.keys[..., :width, :], layer.values[..., :width, :]
