"""Each model's side of a generate() call, and the draft's token-by-token loop.

A round feeds both models through a `ModelSession`: it holds the model's KV cache and where each row's tokens
sit in it, feeds the model the tokens its cache lacks (position ids and attention masks below), and trims the
cache back to the valid tokens after verification (`cache.py` does the cache operations). Rows are described by
the caller's right-aligned layout: `sequences` `(B, T)` with row b's real tokens in its last `lengths[b]`
columns and padding before them. One row uses the model's own cache, rolled back with `crop`; a batch uses a
plain cache of full-attention layers whose rows keep rejected columns as masked holes (`cache.HoledRows`).

Positions count real tokens only (padding gets none), as generate() does for left-padded prompts. A token tree
(DySpec) is read in one pass when every node attends to the prefix and to its own ancestors only, at position
`position(root) + depth`; such a mask is 4D and additive (0 where attending is allowed, the dtype's minimum
elsewhere): eager attention adds it, SDPA takes it as a float mask.

`DraftSession` is the draft's session plus the lean drafting loop of a chain method: every row of the batch
drafts in lockstep with direct forward passes (no inner generate() call). After each drafted token the method's
`StopRule` says which rows stop; a round ends when every row has stopped, reached its cap, or drafted EOS.
Reading that decision is the one host synchronisation per drafted token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

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
from .processing import RowPrefix, process_next

if TYPE_CHECKING:
    from transformers import LogitsProcessorList, PreTrainedModel

    from .pair import VocabMap


# ---------------------------------------------------------------------------------------------------------------
# Positions and attention masks of what a model is fed
# ---------------------------------------------------------------------------------------------------------------

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
    """The additive 4D mask a model takes as-is, from a boolean one.

    Args:
        allowed (`torch.Tensor` of shape `(queries, keys)`, bool): where attending is allowed.
        dtype (`torch.dtype`): the model's dtype.

    Returns:
        `torch.Tensor` of shape `(1, 1, queries, keys)`: 0 where allowed, the dtype's minimum elsewhere.
    """
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def tree_allowed(prefix_visible: torch.Tensor, query_rows: torch.Tensor, key_slots: torch.LongTensor,
                 total_columns: int) -> torch.Tensor:
    """Where the nodes of a token tree may attend: the visible prefix, their ancestors and themselves.

    Args:
        prefix_visible (`torch.Tensor` of shape `(prefix,)`, bool): the prefix columns every node sees.
        query_rows (`torch.Tensor` of shape `(queries, nodes)`, bool): row q marks node q's ancestors and itself.
        key_slots (`torch.LongTensor` of shape `(nodes,)`): the column of every node.
        total_columns (`int`): the mask's width (prefix and tree columns).

    Returns:
        `torch.Tensor` of shape `(queries, total_columns)`, bool.
    """
    allowed = torch.zeros((query_rows.shape[0], total_columns), dtype=torch.bool, device=query_rows.device)
    allowed[:, : prefix_visible.shape[0]] = prefix_visible
    allowed[:, key_slots] = query_rows
    return allowed


def causal_allowed(queries: int, keys: int, device: torch.device) -> torch.Tensor:
    """The causal mask of the last `queries` of `keys` positions.

    Args:
        queries (`int`): the positions fed now (the last ones).
        keys (`int`): all positions (cached and fed).
        device (`torch.device`): where to build it.

    Returns:
        `torch.Tensor` of shape `(queries, keys)`, bool.
    """
    rows = torch.arange(keys - queries, keys, device=device)[:, None]
    return torch.arange(keys, device=device)[None, :] <= rows


# ---------------------------------------------------------------------------------------------------------------
# One model's cache and what to feed it
# ---------------------------------------------------------------------------------------------------------------

class ModelSession:
    """The cache bookkeeping of one model (draft or target) for one generate() call.

    Args:
        model (`PreTrainedModel`): the model this session feeds.
        role (`str`): `"draft"` or `"target"`, for error messages.
        batch_size (`int`): rows of the call (a batch needs attention-only models).
        given_cache (*optional*): the (empty) cache generate() prepared, used for models with state layers only.
    """

    def __init__(self, model: PreTrainedModel, role: str, batch_size: int, given_cache: Any = None):
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
        """Trim the cache so that every row feeds the same number of its last tokens (the rejected ones dropped).

        Args:
            lengths (`list[int]`): real tokens per row now, in the caller's right-aligned layout.
            width (`int`): the layout's width (all of it is fed on the first pass).
            valid (`list[int]`, *optional*): how many of row b's cached real tokens are still right (default:
                `self.cached`).

        Returns:
            `int`: the number of last layout columns to feed now.
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
        """The attention mask and position ids of the next pass, for rows whose last `feed` tokens are fed now.

        Args:
            feed (`int`): columns fed now (`align`'s answer).
            lengths (`list[int]`): real tokens per row.

        Returns:
            `tuple`: the 2D attention mask `(B, columns + feed)` over the cache and the fed columns (None when
            nothing is padded or holed), and the position ids `(B, feed)` of the fed columns.
        """
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
        """One forward pass appended to the cache.

        Args:
            input_ids (`torch.LongTensor` of shape `(B, n)`): the fed tokens.
            position_ids (`torch.LongTensor` of shape `(B, n)`): their positions (`feed_layout`).
            attention_mask (`torch.Tensor`, *optional*): 2D `(B, columns + n)` or an additive 4D tree mask.
            logits_to_keep (`int`): logits are needed for the last this many positions only.
            hidden (`bool`): also return the last hidden state of the kept positions in
                `outputs.hidden_states[-1]`, read from the output layer's input rather than with
                `output_hidden_states=True` (which would keep every layer's states for every fed position).

        Returns:
            The model's output (read its logits with `last_logits`).
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
    """The logits of the last positions of a forward pass (models without `logits_to_keep` return all).

    Args:
        outputs: a model's output.
        count (`int`): positions to keep.

    Returns:
        `torch.Tensor` of shape `(B, count, V)`.
    """
    return outputs.logits[:, -count:]


# ---------------------------------------------------------------------------------------------------------------
# The draft's loop
# ---------------------------------------------------------------------------------------------------------------

class StopRule(Protocol):
    """A chain method's stopping criterion, fresh for every generate() call.

    Called after every drafted token with `input_ids` (the tokens drafted so far this round, `(B, s + 1)`), the
    processed draft `scores` `(B, V)` the newest token was drawn from, the draft's last hidden state that
    produced it (`hidden_states` `(B, H)`, None unless `needs_hidden_states`) and `step` (0-based). Returns a bool
    tensor `(B,)`: stop drafting after this token. Bounds (min/max candidates) and EOS are applied by the loop.

    A rule that adapts between rounds may also define `end_round(drafted, accepted)` (per row of the round, in
    batch order: candidates proposed, candidates the target accepted) and `select_rows(keep)` (the rows, by
    position, that stay in the batch when others finish); the loops call them when present (`notify_round`).
    """

    needs_hidden_states: bool

    def start_round(self, batch_size: int) -> None: ...

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor, *, hidden_states: torch.Tensor | None,
                 step: int) -> torch.BoolTensor: ...


def notify_round(rule: StopRule, drafted: list[int], accepted: list[int]) -> None:
    """Tell a rule that adapts between rounds what the round drafted and the target accepted, row by row."""
    end_round = getattr(rule, "end_round", None)
    if end_round is not None:
        end_round(drafted, accepted)


def notify_rows(rule: StopRule, keep: list[int]) -> None:
    """Tell a rule with per-row state which rows (by position) stay in the batch."""
    select_rows = getattr(rule, "select_rows", None)
    if select_rows is not None:
        select_rows(keep)


@dataclass
class DraftRound:
    """What one round drafted: `tokens` `(B, S)`, the processed draft `scores` `(B, S, V)` they were drawn from
    (target vocabulary; None when the session does not keep them), and each row's candidate count `lengths`
    `(B,)` (on the device), with `steps` = S."""

    tokens: torch.LongTensor
    scores: torch.Tensor | None
    lengths: torch.LongTensor
    steps: int


class DraftSession(ModelSession):
    """The draft's side of one generate() call.

    `keep_scores` (default: `do_sample`): keep every drafted position's processed scores for the round's
    `DraftRound.scores` (speculative sampling needs them; greedy verification does not, and a `(B, V)` float32
    row per drafted token adds up to about 100 MB per round at batch 8 with a 150k vocabulary).
    """

    def __init__(self, draft: PreTrainedModel, processors: LogitsProcessorList, vocab: VocabMap, do_sample: bool,
                 eos_token_ids: torch.Tensor | None, batch_size: int, keep_scores: bool | None = None):
        super().__init__(draft, "draft", batch_size)
        self.processors = processors
        self.vocab = vocab
        self.do_sample = do_sample
        self.keep_scores = do_sample if keep_scores is None else keep_scores
        self.eos = eos_token_ids.to(self.device) if eos_token_ids is not None else None
        self._round: tuple[list[int], int] | None = None

    def finish_round(self, accepted: list[int]) -> None:
        """The target accepted `accepted[b]` candidates of row b: the cache stays valid up to them."""
        lengths, steps = self._round
        if steps:  # a round without drafting left the cache as it was
            self.cached = [length + min(n, steps - 1) for length, n in zip(lengths, accepted)]
        self._round = None

    def skip_round(self, batch_size: int, vocab_size: int) -> DraftRound:
        """A round that drafts nothing (no row has room for a candidate and the target's own token)."""
        self._round = ([], 0)
        empty = torch.zeros((batch_size, 0), dtype=torch.long, device=self.device)
        return DraftRound(empty, torch.zeros((batch_size, 0, vocab_size), device=self.device),
                          torch.zeros(batch_size, dtype=torch.long, device=self.device), 0)

    @torch.no_grad()
    def draft_round(self, sequences: torch.LongTensor, lengths: list[int], max_new: list[int], rule: StopRule,
                    min_candidates: int = 1, prefixes: list[RowPrefix] | None = None) -> DraftRound:
        """Draft for every row until its rule stops it, it reaches its cap or drafts EOS.

        Args:
            sequences (`torch.LongTensor` of shape `(B, T)`): row b's real tokens in its last `lengths[b]` columns.
            lengths (`list[int]`): real tokens per row.
            max_new (`list[int]`): the most candidates per row (each >= 1).
            rule (`StopRule`): the method's stop rule for this call.
            min_candidates (`int`): candidates drafted before the rule may stop a row.
            prefixes (`list[RowPrefix]`, *optional*): the rows as generate() shows them to logits processors,
                with each row's processors (read only when a processor reads token ids).

        Returns:
            `DraftRound`: tokens `(B, S)`, their processed scores `(B, S, V)` when kept, candidates per row `(B,)`.
        """
        batch = len(lengths)
        feed = self.align(lengths, sequences.shape[1])
        fed_ids = self.vocab.ids_for_draft(sequences[:, -feed:].to(self.device))
        attention, positions = self.feed_layout(feed, lengths)
        steps_cap = max(max_new)
        cap = to_device(max_new, self.device)
        rule.start_round(batch)
        tokens = torch.empty((batch, steps_cap), dtype=torch.long, device=self.device)
        all_scores: list[torch.Tensor] = []
        stopped = torch.zeros(batch, dtype=torch.bool, device=self.device)
        lengths_out = torch.full((batch,), steps_cap, dtype=torch.long, device=self.device)
        if attention is not None:  # the mask of the whole round at once; each step reads a longer prefix of it
            attention = torch.cat([attention, attention.new_ones((batch, steps_cap - 1))], dim=1)
            columns = attention.shape[1] - (steps_cap - 1)
        steps = 0
        for step in range(steps_cap):
            mask = attention[:, : columns + step] if attention is not None else None
            outputs = self.forward(fed_ids, positions, mask, 1, hidden=rule.needs_hidden_states)
            logits = self.vocab.draft_scores_for_target(last_logits(outputs, 1)[:, 0])
            scores = process_next(self.processors, prefixes or [], tokens[:, :step], logits)
            if self.do_sample:
                token = torch.multinomial(scores.softmax(dim=-1), num_samples=1)[:, 0]
            else:
                token = scores.argmax(dim=-1)
            tokens[:, step] = token
            steps = step + 1
            if self.keep_scores:
                all_scores.append(scores)
            hidden = outputs.hidden_states[-1][:, -1] if rule.needs_hidden_states else None
            stop = rule(tokens[:, : step + 1], scores, hidden_states=hidden, step=step)
            if step + 1 < min_candidates:
                stop = torch.zeros_like(stop)
            if self.eos is not None:
                stop = stop | torch.isin(token, self.eos)
            stop = stop | (cap <= step + 1)
            lengths_out = torch.where(stop & ~stopped, step + 1, lengths_out)
            stopped = stopped | stop
            if step + 1 == steps_cap or bool(stopped.all()):  # the host sync of this drafted token
                break
            fed_ids = token[:, None]
            positions = positions[:, -1:] + 1
        self._round = (lengths, steps)
        return DraftRound(tokens[:, :steps], torch.stack(all_scores, dim=1) if self.keep_scores else None,
                          lengths_out, steps)
