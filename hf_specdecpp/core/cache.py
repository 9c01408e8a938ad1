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
    """Remove the newest positions of a cache (rejected candidates).

    `crop` is only ever called with a negative count: `crop(0)` emptied a cache before transformers 5.14 and a
    positive count meant "keep n" before 5.20.

    Args:
        cache: a transformers cache of one sequence (or a batch whose rows drop the same number).
        tokens (`int`): positions to remove; 0 or less removes nothing.

    Raises:
        CacheSupportError: recurrent layers that did not keep the intermediate states needed.
    """
    if tokens <= 0:
        return
    try:
        cache.crop(-int(tokens))
    except IndexError as err:  # 5.25+ recurrent layers keep only the intermediate states their model computed
        raise CacheSupportError(
            f"The model's recurrent states cannot be rolled back by {tokens} positions: its layers did not keep "
            "the intermediate states of a multi-token forward pass (this model computes only the last one). "
            "hf_specdecpp's own decoding loop needs them; for one sequence, candidate_generator= runs "
            "transformers' assisted decoding instead.") from err


def realign(cache: Any, pads: list[int] | None, keep: list[int], valid: torch.Tensor | None = None) -> list[int]:
    """Keep the first `keep[b]` real positions of every row of a batch cache, right-aligned.

    Args:
        cache: a cache of full-attention (or sliding-window) layers, keys `(B, heads, columns, head_dim)`.
        pads (`list[int]`, *optional*): left padding columns per row now (None with `valid`).
        keep (`list[int]`): real positions to keep per row.
        valid (`torch.Tensor` of shape `(B, columns)`, *optional*): the real columns of rows with holes.

    Returns:
        `list[int]`: the new left padding per row (`max(keep) - keep[b]`).

    Row b's real positions occupy columns `pads[b]:` of the cache before the call, or, with `valid` `(B, columns)`
    (rows with holes, `HoledRows`), the columns marked there. Afterwards the cache is `max(keep)` columns wide and
    row b's kept positions fill its last `keep[b]` columns; the columns to their left are padding (masked by the
    caller's attention mask). Rows whose padding does not change are a plain crop; otherwise one gather per
    layer, its index built on the device (B integers sent without a sync: `to_device`).
    """
    width = max(keep)
    new_pads = [width - k for k in keep]
    layers = [layer for layer in cache_layers(cache)
              if getattr(layer, "is_initialized", True) and layer.keys is not None and layer.keys.numel() > 0]
    if valid is None and new_pads == list(pads):  # every row keeps the same leading columns
        for layer in layers:
            layer.keys, layer.values = layer.keys[..., :width, :], layer.values[..., :width, :]
        return new_pads
    index = None
    for layer in layers:
        if index is None:
            device = layer.keys.device
            targets = torch.arange(width, device=device)[None, :] - to_device(new_pads, device)[:, None]
            if valid is None:  # row b's kept positions start at column pads[b]
                index = (targets + to_device(pads, device)[:, None]).clamp(min=0)
            else:  # the real columns of each row, in order (a stable sort puts them first)
                order = torch.argsort((~valid.to(device)).to(torch.int8), dim=1, stable=True)
                index = order.gather(1, targets.clamp(min=0))
        index = index.to(layer.keys.device)  # a device-to-device copy where a dispatched model spans devices
        gather = index[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[-1])
        layer.keys = layer.keys.gather(2, gather)
        layer.values = layer.values.gather(2, gather)
    return new_pads


def has_window_layers(model: torch.nn.Module) -> bool:
    """Whether any of the model's cache layers is a sliding window (its mask counts slots, so no holes)."""
    probe = DynamicCache(config=model.config)
    return any(type(layer).__name__ in WINDOW_LAYER_TYPES for layer in cache_layers(probe))


class HoledRows:
    """Where each batch row's real tokens sit in a batch cache whose rows may have holes (masked columns).

    Rows accept different numbers of candidates, so after a round their valid tokens end at different columns,
    while the next pass appends at one column for all. Moving every row to re-align it (`realign`) copies every
    layer's whole cache each round: O(sequence) work per round. Instead the rejected columns stay where they are
    and are masked out (`mask`), positions being given explicitly; the cache is compacted (one gather per layer,
    `realign`) only once the holes exceed a quarter of the width, which keeps the amortised work per round
    independent of the sequence length. Host side: per row, the runs `[start, end)` of its real columns
    (appending and truncating touch the last runs only); device side: the `(B, columns)` mask of real columns.
    Not for sliding-window layers, whose mask counts slot distances (`has_window_layers`).
    """

    def __init__(self, pads: list[int], width: int, device: torch.device, valid: torch.Tensor | None = None):
        """Rows of `width` columns, row b's first `pads[b]` padding; `valid`: that mask when already on the device."""
        self.device = device
        self.runs = [[[p, width]] if p < width else [] for p in pads]
        self.counts = [width - p for p in pads]  # real columns per row
        self.valid = valid if valid is not None else \
            torch.arange(width, device=device)[None, :] >= to_device(pads, device)[:, None]
        self.holes = any(pads)

    def append(self, real: list[int], columns: int, fed_real: torch.Tensor) -> None:
        """`fed_real.shape[1]` columns were appended after `columns`; row b's last `real[b]` of them are real."""
        n = fed_real.shape[1]
        for b, (runs, count) in enumerate(zip(self.runs, real)):
            self.counts[b] += count
            if count and runs and runs[-1][1] == columns + n - count:
                runs[-1][1] = columns + n
            elif count:
                runs.append([columns + n - count, columns + n])
        self.holes = self.holes or any(count < n for count in real)
        self.valid = torch.cat([self.valid, fed_real], dim=1)

    def truncate(self, cache: Any, keep: list[int]) -> int:
        """Keep the first `keep[b]` real tokens of every row; return the new cache width."""
        ends = []
        for b, (runs, count) in enumerate(zip(self.runs, keep)):
            extra = self.counts[b] - count
            while extra > 0:  # drop the newest real columns, run by run from the end
                dropped = min(extra, runs[-1][1] - runs[-1][0])
                runs[-1][1] -= dropped
                extra -= dropped
                if runs[-1][0] == runs[-1][1]:
                    runs.pop()
            self.counts[b] = count
            ends.append(runs[-1][1] if runs else 0)
        width = max(ends)
        self.valid = self.valid[:, :width]
        if any(end < width for end in ends):
            self.valid = self.valid & (torch.arange(width, device=self.device)[None, :] <
                                       to_device(ends, self.device)[:, None])
            self.holes = True
        if width > max(keep) + max(16, max(keep) // 4):  # too many holes: compact (amortised O(1) per round)
            pads = realign(cache, None, keep, self.valid)
            self.__init__(pads, max(keep), self.device)
            return max(keep)
        for layer in cache_layers(cache):
            if getattr(layer, "is_initialized", True) and layer.keys is not None and layer.keys.numel() > 0:
                layer.keys, layer.values = layer.keys[..., :width, :], layer.values[..., :width, :]
        return width

    def select(self, rows: list[int], index: torch.LongTensor) -> None:
        """Keep the batch rows `rows` (`index` on the device)."""
        self.runs = [self.runs[r] for r in rows]
        self.counts = [self.counts[r] for r in rows]
        self.valid = self.valid.index_select(0, index)


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
    """Keep a prefix and then chosen positions in every layer of a one-sequence cache (a tree's accepted path).

    Args:
        cache: a cache of full-attention layers (`check_gatherable`).
        prefix (`int`): leading positions kept as they are.
        positions (`list[int]`): further positions to keep, increasing, all >= `prefix`; they follow the prefix.

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
