"""The lean drafting loop of a chain method: token by token with direct forward passes over the draft's cache.

Each round drafts for every row of the batch in lockstep (no inner generate() call). After each drafted token
the method's `StopRule` says which rows stop; a round ends when every row has stopped, reached its cap, or
drafted EOS. Reading that decision is the one host synchronisation per drafted token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from .device import to_device
from .model_session import ModelSession, last_logits
from .processing import RowPrefix, process_next

if TYPE_CHECKING:
    from transformers import LogitsProcessorList, PreTrainedModel

    from .pair import VocabMap


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
        """Draft for every row until its rule stops it, it reaches `max_new[b]` (>= 1) candidates or drafts EOS.

        `sequences` `(B, T)` holds row b's real tokens in its last `lengths[b]` columns; `prefixes` are the rows
        as generate() shows them to logits processors, with each row's processors (read only when a processor reads
        token ids).
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
