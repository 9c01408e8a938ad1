"""One model's side of a generate() call: its KV cache and where each row's tokens sit in it.

Rows are described by the caller's right-aligned layout: `sequences` `(B, T)` with row b's real tokens in its
last `lengths[b]` columns and padding before them. A session feeds a model the tokens its cache lacks and keeps
its own alignment: one row uses the model's own cache, rolled back with `crop`; a batch uses a plain cache of
full-attention layers re-aligned per row (`cache.py`). Positions count real tokens only, as generate() does for
left-padded prompts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .attention import fed_positions, fed_real_mask, padded_mask
from .cache import (
    CacheSupportError,
    HoledRows,
    check_loop_cache,
    has_window_layers,
    new_batch_cache,
    prepare_single_cache,
    realign,
    rollback,
    select_rows,
    state_layer_types,
)
from .compat import activate_past_recording, cache_argument, output_cache, supports_logits_to_keep
from .device import input_device, to_device

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class ModelSession:
    """The cache bookkeeping of one model (draft or target) for one generate() call."""

    def __init__(self, model: PreTrainedModel, role: str, batch_size: int, given_cache: Any = None):
        """`given_cache`: the (empty) cache generate() prepared, used for models with state layers only."""
        self.model = model
        self.role = role
        self.device = input_device(model)  # where its inputs go (a dispatched model's first parameter may be elsewhere)
        self.batched = batch_size > 1
        check_loop_cache(given_cache, role)
        states = state_layer_types(model)
        if not states:  # attention only: a plain cache of our own (see cache.py)
            self.cache = new_batch_cache()
        elif self.batched:
            raise CacheSupportError(
                f"The {role} model ({type(model).__name__}) keeps {states} states, which cannot be rolled back row by "
                "row: speculative decoding of a batch needs attention-only models. Call generate() once per prompt.")
        else:  # the model's own cache (built on the first forward pass when none is given), recording its past
            self.cache = given_cache
            if given_cache is not None:
                activate_past_recording(given_cache)
        self.cache_key = cache_argument(model)
        self.logits_to_keep = supports_logits_to_keep(model)
        self.pads = [0] * batch_size  # cache columns of padding before each row's tokens
        self.cached = [0] * batch_size  # real tokens of each row held (and still valid) in the cache
        self.columns = 0  # cache width, the same for every row
        self.forwards = 0
        # a batch of full-attention rows keeps rejected columns as masked holes instead of re-aligning every round
        self.holed = self.batched and not has_window_layers(model)
        self.rows: HoledRows | None = None
        self._fed: tuple[list[int], torch.Tensor] | None = None  # the next pass's real columns (feed_layout)

    def select_rows(self, rows: list[int]) -> None:
        """Keep only `rows` (indices into the current batch) for the next rounds."""
        if self.cache is not None and self.columns:
            index = to_device(rows, self.device)
            select_rows(self.cache, index)
            if self.rows is not None:
                self.rows.select(rows, index)
        self.pads = [self.pads[r] for r in rows]
        self.cached = [self.cached[r] for r in rows]

    def align(self, lengths: list[int], width: int, valid: list[int] | None = None) -> int:
        """Trim the cache so that every row feeds the same number `u` of its last tokens; return u.

        `valid[b]` (default: `self.cached`) is how many of row b's real tokens in the cache are still right.
        """
        if self.columns == 0:  # nothing cached yet: feed everything, padding included
            self.pads = [width - length for length in lengths]
            return width
        valid = self.cached if valid is None else valid
        feed = max(length - min(v, length - 1) for length, v in zip(lengths, valid))
        self.truncate([max(length - feed, 0) for length in lengths])
        return feed

    def truncate(self, keep: list[int]) -> None:
        """Keep only the first `keep[b]` real tokens of every row in the cache (re-aligning a batch)."""
        if self.rows is not None:
            self.columns = self.rows.truncate(self.cache, keep)
        elif self.batched:
            self.pads = realign(self.cache, self.pads, keep)
            self.columns = max(keep)
        else:
            rollback(self.cache, self.columns - self.pads[0] - keep[0])
            self.columns = self.pads[0] + keep[0]
        self.cached = keep

    def final_cache(self) -> Any:
        """The cache at the end of a call: for one sequence, holding exactly its valid tokens (as generate()
        returns it: every token but the last), without the verified positions of a round cut short."""
        if not self.batched and self.columns:
            self.truncate(self.cached)
        return self.cache

    def feed_layout(self, feed: int, lengths: list[int]) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(2D attention mask over the cache and `feed` new columns, or None when nothing is padded;
        position ids `(B, feed)` of the new columns), for rows whose last `feed` tokens are fed now."""
        real = fed_real_mask(feed, lengths, self.device)
        positions = fed_positions(self.cached, real)
        if self.holed:
            self._fed = ([min(length, feed) for length in lengths], real)
        if self.rows is not None:
            if not self.rows.holes and all(length >= feed for length in lengths):
                return None, positions
            return torch.cat([self.rows.valid, real], dim=1).long(), positions
        if not any(self.pads) and all(length >= feed for length in lengths):
            return None, positions
        return padded_mask(self.pads, self.columns, real), positions

    def forward(self, input_ids: torch.LongTensor, position_ids: torch.LongTensor,
                attention_mask: torch.Tensor | None, logits_to_keep: int, hidden: bool = False):
        """One forward pass over `input_ids` `(B, n)` appended to the cache (logits of the last positions).

        With `hidden`, `outputs.hidden_states[-1]` holds the last hidden state of (at least) the kept positions:
        read from the output layer's input rather than with `output_hidden_states=True`, which would keep every
        layer's states for every fed position (the whole prompt on the first round).
        """
        kwargs = {self.cache_key: self.cache, "use_cache": True, "position_ids": position_ids}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if self.logits_to_keep:
            kwargs["logits_to_keep"] = logits_to_keep
        self.forwards += 1
        head_input = self.model.get_output_embeddings() if hidden else None
        if hidden and head_input is None:
            kwargs["output_hidden_states"] = True
        if head_input is not None:  # the output layer's input is the last hidden state of the kept positions only
            captured: list[torch.Tensor] = []
            handle = head_input.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
            try:
                outputs = self.model(input_ids=input_ids.to(self.device), **kwargs)
            finally:
                handle.remove()
            outputs.hidden_states = (captured[-1].to(self.device),)  # where a dispatched model's outputs land
        else:
            outputs = self.model(input_ids=input_ids.to(self.device), **kwargs)
        if self.cache is None:
            self.cache = output_cache(outputs)
            activate_past_recording(self.cache)
        if self.columns == 0 and self.cache is not None:  # state layers say whether they can crop once filled
            prepare_single_cache(self.cache, self.role)
        if self.holed:
            self._record_columns(input_ids.shape[1])
        self.columns += input_ids.shape[1]
        return outputs

    def _record_columns(self, n: int) -> None:
        """Mark the `n` columns just appended: real where `feed_layout` said so, real beyond them (candidates)."""
        counts, real = self._fed if self._fed is not None else ([0] * len(self.cached), self._no_columns())
        self._fed = None
        extra = n - real.shape[1]
        real = torch.cat([real, real.new_ones((real.shape[0], extra))], dim=1) if extra else real
        counts = [c + extra for c in counts]
        if self.rows is None:
            self.rows = HoledRows([n - c for c in counts], n, self.device, real.bool())
        else:
            self.rows.append(counts, self.columns, real)

    def _no_columns(self) -> torch.Tensor:
        return torch.ones((len(self.cached), 0), dtype=torch.bool, device=self.device)


def last_logits(outputs: Any, count: int) -> torch.Tensor:
    """The logits of the last `count` positions `(B, count, V)` (models without `logits_to_keep` return all)."""
    return outputs.logits[:, -count:]
