"""Drafting for a serving engine's running requests: one batched draft cache that outlives engine steps.

A serving engine (vLLM's `custom_class` proposer hook) asks for drafts once per step and shows each running
request only as a row of token ids: its context so far. `RequestDrafter` keeps one right-aligned batch cache of
the draft (the package's `DraftSession`) whose rows are the requests it has seen, and each step

1. finds each row's request among the rows it holds, by content: a held row belongs to an engine row when the
   context it drafted from last step is a prefix of the engine row's context (requests only ever append tokens);
   rows with identical contexts are interchangeable, so a tie is harmless;
2. drops held rows that no engine row claimed (finished, preempted or unscheduled requests; a request that comes
   back is prefilled again), and prefills the engine rows it holds nothing for in one batched pass of their own,
   merged into the batch cache afterwards so that arrivals do not make the other rows re-read their contexts;
3. keeps of each row's cache only the longest prefix that equals the row's context now (the accepted drafts;
   the engine's rejection sampling and bonus tokens need no other signal), and drafts for all rows together,
   one batched forward per drafted position, each row stopped by the stop rule on its own.

Identity by content keeps the drafter independent of the engine's row order and request ids, which the hook
does not pass; correctness never depends on the match, because step 3 re-checks every cached token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers import LogitsProcessorList

from ..core.compat import cache_layers
from ..core.drafting import DraftSession, StopRule
from ..core.pair import VocabMap

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass
class HeldRow:
    """One request's row in the batch cache: the ids whose keys and values it holds, and the context length it
    last drafted from (what the engine's next context for the same request starts with)."""

    fed: np.ndarray
    context_length: int


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two 1D id arrays."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n


def right_aligned(contexts: list[np.ndarray], width: int | None = None) -> torch.LongTensor:
    """`(B, width)` ids with row b's context in its last columns (0 before it)."""
    width = width or max(len(c) for c in contexts)
    out = np.zeros((len(contexts), width), dtype=np.int64)
    for b, context in enumerate(contexts):
        out[b, width - len(context):] = context
    return torch.from_numpy(out)


def merge_sessions(main: DraftSession, extra: DraftSession) -> None:
    """Append `extra`'s rows to `main` (both right-aligned batch caches): the narrower one gets padding columns
    on the left, so every row keeps its alignment and `main` stays a valid batch cache."""
    if not main.pads:  # no rows held: take the new ones as they are
        main.cache, main.pads, main.cached, main.columns = extra.cache, extra.pads, extra.cached, extra.columns
        return
    width = max(main.columns, extra.columns)
    for mine, theirs in zip(cache_layers(main.cache), cache_layers(extra.cache)):
        mine.keys = torch.cat([_pad_left(mine.keys, width), _pad_left(theirs.keys, width)], dim=0)
        mine.values = torch.cat([_pad_left(mine.values, width), _pad_left(theirs.values, width)], dim=0)
    main.pads = [p + width - main.columns for p in main.pads] + [p + width - extra.columns for p in extra.pads]
    main.cached = main.cached + extra.cached
    main.columns = width


def _pad_left(states: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - states.shape[-2]
    if missing == 0:
        return states
    return torch.cat([states.new_zeros((*states.shape[:-2], missing, states.shape[-1])), states], dim=-2)


class RequestDrafter:
    """Drafts for a changing set of requests with one batched draft cache (see the module docstring).

    Args:
        draft: the draft model (attention layers only: rows are re-aligned by gathering cache columns).
        rule: the stop rule (`StopRule`) that ends each row's draft, e.g. SpecDec++'s threshold on the head.
        vocab: the draft's and the target's output sizes (drafts stay within the target's vocabulary).
        eos_token_ids: ids that end a draft (a drafted EOS is proposed, nothing after it).
        min_candidates: a row drafts at least this many tokens (when its cap allows).
    """

    def __init__(self, draft: PreTrainedModel, rule: StopRule, vocab: VocabMap, eos_token_ids: list[int] | None = None,
                 min_candidates: int = 1):
        self.draft = draft
        self.rule = rule
        self.vocab = vocab
        self.eos = torch.tensor(eos_token_ids, dtype=torch.long) if eos_token_ids else None
        self.min_candidates = min_candidates
        self.session = self._new_session(0)
        self.rows: list[HeldRow] = []
        self.held_at: dict[int, int] = {}  # engine row -> held row, as of the last step
        self.forwards = 0
        self.changed = False

    def _new_session(self, rows: int) -> DraftSession:
        """An empty batch cache for `rows` rows (2 at construction: the batch path refuses state layers)."""
        session = DraftSession(self.draft, LogitsProcessorList(), self.vocab, False, self.eos, 2)
        session.holed = False  # rows are merged and re-aligned here by padding (`merge_sessions`), not masked holes
        session.pads, session.cached = [0] * rows, [0] * rows
        return session

    @property
    def num_requests(self) -> int:
        """Requests whose draft cache is held now."""
        return len(self.rows)

    @torch.no_grad()
    def propose(self, contexts: list[np.ndarray | None], caps: list[int]) -> list[list[int]]:
        """One engine step: a draft for every engine row.

        Args:
            contexts: row i's token ids so far (1D), or None for a row that gets no draft this step.
            caps: the most tokens row i may draft (0: none).

        Returns:
            One list of drafted ids per row (empty for rows without a draft).
        """
        active = [i for i, context in enumerate(contexts) if context is not None and caps[i] > 0 and len(context) > 1]
        claimed = self._claim(active, contexts)
        kept = [i for i in active if claimed[i] is not None]
        self._keep([claimed[i] for i in kept])
        arrivals = [i for i in active if claimed[i] is None]
        self.changed = bool(arrivals) or len(kept) != len(self.rows)  # requests came or went this step
        if arrivals:
            self._prefill([contexts[i] for i in arrivals])
        order = kept + arrivals  # engine rows in the order of the batch cache's rows
        self.held_at = {i: b for b, i in enumerate(order)}
        drafts: list[list[int]] = [[] for _ in contexts]
        if order:
            tokens = self._draft([contexts[i] for i in order], [caps[i] for i in order])
            for i, row in zip(order, tokens):
                drafts[i] = row
        return drafts

    def _claim(self, active: list[int], contexts: list[np.ndarray | None]) -> dict[int, int | None]:
        """Engine row -> held row of the same request (None: a request held nowhere)."""
        free = set(range(len(self.rows)))
        claimed: dict[int, int | None] = {}
        for i in active:
            context = contexts[i]
            match = None
            last = self.held_at.get(i)
            for j in ([last] if last in free else []) + sorted(free):  # where it was last step first: rows rarely move
                held = self.rows[j]
                if len(context) >= held.context_length and common_prefix(held.fed, context) >= held.context_length:
                    match = j
                    break
            claimed[i] = match
            free.discard(match)
        return claimed

    def _keep(self, held: list[int]) -> None:
        """Keep only the held rows `held`, in that order (the others' requests left the batch)."""
        if held == list(range(len(self.rows))):
            return
        if held:
            self.session.select_rows(held)
        else:
            self.session = self._new_session(0)
        self.rows = [self.rows[j] for j in held]

    def _prefill(self, contexts: list[np.ndarray]) -> None:
        """Read the arrivals' contexts (all but the last id, which the first draft step feeds) into a cache of
        their own and append its rows to the batch cache."""
        arrivals = self._new_session(len(contexts))
        lengths = [len(c) - 1 for c in contexts]
        feed = arrivals.align(lengths, max(lengths))
        attention, positions = arrivals.feed_layout(feed, lengths)
        arrivals.forward(right_aligned([c[:-1] for c in contexts]), positions, attention, 1)
        arrivals.cached = lengths
        self.forwards += 1
        merge_sessions(self.session, arrivals)
        self.rows += [HeldRow(np.asarray(c[:-1]), len(c) - 1) for c in contexts]

    def _draft(self, contexts: list[np.ndarray], caps: list[int]) -> list[list[int]]:
        """Draft for every held row (in batch-cache order) from its context, keeping what is still valid."""
        session = self.session
        session.cached = [common_prefix(row.fed, context) for row, context in zip(self.rows, contexts)]
        lengths = [len(c) for c in contexts]
        forwards = session.forwards
        result = session.draft_round(right_aligned(contexts), lengths, caps, self.rule, self.min_candidates)
        self.forwards += session.forwards - forwards
        session.finish_round([result.steps] * len(contexts))  # each row's cache now holds its drafts but the last
        tokens = result.tokens.cpu().numpy()
        counts = result.lengths.tolist()
        for b, context in enumerate(contexts):
            self.rows[b] = HeldRow(np.concatenate([context, tokens[b, : result.steps - 1]]), len(context))
        return [tokens[b, : counts[b]].tolist() for b in range(len(contexts))]
