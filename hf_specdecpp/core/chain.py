"""hf_specdecpp's own draft-then-verify loop for chains of candidates, for one sequence or a batch.

generate() prepares everything (generation config, logits processors, stopping criteria, KV cache) and this
loop decodes: through `custom_generate=`, or through the patch when transformers' own assisted decoding cannot
serve the call (a batch, several return sequences). Every round:

1. the draft proposes candidates for every active row (`DraftSession.draft_round`, the method's stop rule);
2. the target reads each row's uncached tokens and all candidates in ONE forward pass;
3. each row keeps its accepted candidates plus one target token (greedy match or speculative sampling), cut at
   EOS, at its length limit and at the first token a stopping criterion stops at; finished rows leave the batch
   (they cost nothing afterwards);
4. both caches drop what was rejected (rows re-aligned when they accepted different numbers).

Host synchronisations, counting what a GPU waits on (reads of device values and blocking host-to-device copies,
`hf_specdecpp.bench.syncs`): one per drafted token (the stop decision) and one per round (the round's outcome),
whatever the batch size and the number of layers, plus one per accepted token when the call has stopping criteria
beyond its length and EOS limits (each accepted token is offered to them in order, `criteria.py`). The round's
host integers (lengths, budgets, kept rows) reach the device through staged non-blocking copies
(`core.device.to_device`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

from .criteria import criteria_to_offer, first_stop
from .device import to_device
from .drafting import DraftRound, DraftSession, notify_round, notify_rows
from .model_session import ModelSession, last_logits
from .processing import RowPrefix, process_positions, processors_for_row
from .stats import SpeculationStats
from .verification import verify_greedy, verify_sampling

if TYPE_CHECKING:
    from transformers import StoppingCriteriaList

    from .call import CallContext
    from .drafting import StopRule


@dataclass
class ChainSpec:
    """What the loop needs from a chain method: a fresh stop rule per call and its candidate bounds."""

    new_rule: Callable[[], StopRule]
    min_candidates: int
    max_candidates: int


@dataclass
class DecodeResult:
    """Output ids `(B, P + N)` (rows padded at the end), the call's statistics, and what return_dict needs."""

    sequences: torch.LongTensor
    stats: SpeculationStats
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    cache: Any = None
    draft_cache: Any = None  # for inspection in tests; not part of generate()'s output


@dataclass
class Rows:
    """Every row's tokens: its prompt as given (left padding included), the tokens it added, and its state."""

    prompt: torch.LongTensor
    real: list[torch.LongTensor]  # per row: real prompt tokens + added tokens (1D)
    added: list[list[torch.Tensor]] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    @classmethod
    def start(cls, prompt: torch.LongTensor, attention_mask: torch.Tensor | None) -> "Rows":
        lengths = attention_mask.sum(dim=1).tolist() if attention_mask is not None else [prompt.shape[1]] * len(prompt)
        real = [prompt[b, prompt.shape[1] - n:] for b, n in enumerate(lengths)]
        return cls(prompt, real, [[] for _ in real], [0] * len(real))

    def generate_view(self, row: int) -> torch.LongTensor:
        """Row `row` as generate() shows it to processors and criteria: prompt as given, then added tokens (1D)."""
        return torch.cat([self.prompt[row], *self.added[row]])

    def layout(self, rows: list[int], pad_token_id: int) -> torch.LongTensor:
        """The real tokens of `rows`, right-aligned in one `(len(rows), max length)` tensor."""
        width = max(self.real[b].shape[0] for b in rows)
        out = self.prompt.new_full((len(rows), width), pad_token_id)
        for i, b in enumerate(rows):
            out[i, width - self.real[b].shape[0]:] = self.real[b]
        return out

    def add(self, row: int, tokens: torch.LongTensor) -> None:
        tokens = tokens.to(self.prompt.device)
        self.added[row].append(tokens)
        self.real[row] = torch.cat([self.real[row], tokens])
        self.counts[row] += tokens.shape[0]

    def sequences(self, pad_token_id: int) -> torch.LongTensor:
        """All rows `(B, P + max added)`, shorter rows padded at the end (as generate() pads finished rows)."""
        width = self.prompt.shape[1] + max(self.counts)
        out = self.prompt.new_full((self.prompt.shape[0], width), pad_token_id)
        for b in range(self.prompt.shape[0]):
            view = self.generate_view(b)
            out[b, : view.shape[0]] = view
        return out


@torch.no_grad()
def chain_decode(ctx: CallContext, spec: ChainSpec, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None,
                 stopping_criteria: StoppingCriteriaList, target_cache: Any = None) -> DecodeResult:
    """Decode `input_ids` `(B, P)` with the chain method `spec`; see the module docstring."""
    batch = input_ids.shape[0]
    rows = Rows.start(input_ids, attention_mask)
    stats = SpeculationStats.for_batch(batch)
    target = ModelSession(ctx.target, "target", batch, given_cache=target_cache)
    draft = DraftSession(ctx.draft, ctx.logits_processor, ctx.vocab, ctx.do_sample, ctx.eos_token_ids, batch)
    rule = spec.new_rule()
    offered = criteria_to_offer(stopping_criteria, ctx.max_length, ctx.eos_token_ids)
    row_processors = [processors_for_row(ctx.logits_processor, b) for b in range(batch)]
    active, scores_out, logits_out = list(range(batch)), [], []  # scores/logits per new token, when returned
    if ctx.streamer is not None:
        ctx.streamer.put(input_ids.cpu())
    while active:
        budget = [ctx.max_length - input_ids.shape[1] - rows.counts[b] for b in active]
        prefixes = [RowPrefix(rows.generate_view(b), row_processors[b]) for b in active] \
            if ctx.processors_read_ids else None
        lengths = [rows.real[b].shape[0] for b in active]
        layout = rows.layout(active, ctx.pad_token_id)
        drafted = _draft(draft, layout, lengths, budget, rule, spec, prefixes)
        raw, scores = _verify_pass(ctx, target, layout, lengths, drafted, prefixes)
        room = to_device([min(spec.max_candidates, left - 1) for left in budget], raw.device)
        candidate_lengths = torch.minimum(drafted.lengths.to(raw.device), room.clamp(min=0))
        accepted, new_tokens = _select(ctx, drafted, scores, candidate_lengths)
        eos_at = _first_eos(new_tokens, accepted, ctx.eos_token_ids)
        drafted_list, accepted_list, eos_list = torch.stack([candidate_lengths, accepted, eos_at]).tolist()
        counts, finished = [], []
        for i, b in enumerate(active):
            count, stop = _kept(offered, rows, b, new_tokens[i], scores[i], budget[i], accepted_list[i] + 1,
                                eos_list[i] + 1, scores_out if ctx.output_scores else None)
            rows.add(b, new_tokens[i, :count])
            counts.append(count)
            if stop:
                finished.append(i)
            if ctx.output_scores or ctx.output_logits:
                scores_out.extend(scores[i, :count].unbind(0))
                logits_out.extend(raw[i, :count].unbind(0))
        if ctx.streamer is not None:
            ctx.streamer.put(new_tokens[0, : counts[0]].cpu())
        kept = [c - 1 for c in counts]  # accepted candidates per row, cut at EOS and at the length limit
        stats.record_round(dict(zip(active, drafted_list)), dict(zip(active, kept)))
        notify_round(rule, drafted_list, kept)
        draft.finish_round(kept)
        target.cached = [length + c - 1 for length, c in zip(lengths, counts)]
        if finished:
            keep = [i for i in range(len(active)) if i not in finished]
            if keep:
                target.select_rows(keep)
                draft.select_rows(keep)
                notify_rows(rule, keep)
            active = [active[i] for i in keep]
    if ctx.streamer is not None:
        ctx.streamer.end()
    stats.target_forwards, stats.draft_forwards = target.forwards, draft.forwards
    stats.set_new_tokens(rows.counts)
    return DecodeResult(rows.sequences(ctx.pad_token_id), stats,
                        tuple(s[None] for s in scores_out) if ctx.output_scores else None,
                        tuple(s[None] for s in logits_out) if ctx.output_logits else None,
                        target.final_cache(), draft.cache)


def _draft(draft: DraftSession, layout: torch.LongTensor, lengths: list[int], budget: list[int], rule: StopRule,
           spec: ChainSpec, prefixes: list[RowPrefix] | None) -> DraftRound:
    """This round's candidates; none when no row has room for a candidate plus the target's own token."""
    max_new = [min(spec.max_candidates, left - 1) for left in budget]
    if max(max_new) < 1:
        return draft.skip_round(len(lengths), draft.vocab.target_size)
    return draft.draft_round(layout, lengths, [max(1, m) for m in max_new], rule, spec.min_candidates, prefixes)


def _verify_pass(ctx: CallContext, target: ModelSession, layout: torch.LongTensor, lengths: list[int],
                 drafted: DraftRound, prefixes: list[RowPrefix] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One target pass over each row's uncached tokens and all candidates: (raw logits, processed scores), each
    `(B, S + 1, V)` for the S + 1 positions the candidates are verified at."""
    feed = target.align(lengths, layout.shape[1])
    steps = drafted.steps
    attention, positions = target.feed_layout(feed, lengths)
    positions = torch.cat([positions, positions[:, -1:] + torch.arange(1, steps + 1, device=target.device)], dim=1)
    if attention is not None:
        attention = torch.cat([attention, attention.new_ones((len(lengths), steps))], dim=1)
    ids = torch.cat([layout[:, -feed:].to(target.device), drafted.tokens.to(target.device)], dim=1)
    outputs = target.forward(ids, positions, attention, steps + 1)
    raw = last_logits(outputs, steps + 1).float()
    return raw, process_positions(ctx.logits_processor, prefixes or [], drafted.tokens.to(target.device), raw)


def _select(ctx: CallContext, drafted: DraftRound, scores: torch.Tensor,
            candidate_lengths: torch.LongTensor) -> tuple[torch.LongTensor, torch.LongTensor]:
    """(accepted candidates per row, the row's new tokens `(B, S + 1)`: accepted candidates then the target's)."""
    candidates = drafted.tokens.to(scores.device)
    if ctx.do_sample:
        accepted, bonus = verify_sampling(candidates, drafted.scores.to(scores.device).softmax(-1),
                                          scores.softmax(-1), candidate_lengths)
    else:
        accepted, bonus = verify_greedy(candidates, scores, candidate_lengths)
    new_tokens = torch.cat([candidates, candidates.new_zeros((candidates.shape[0], 1))], dim=1)
    return accepted, new_tokens.scatter(1, accepted[:, None], bonus[:, None])


def _first_eos(tokens: torch.LongTensor, accepted: torch.LongTensor, eos: torch.Tensor | None) -> torch.LongTensor:
    """Per row, the index of the first EOS among `tokens[:, :accepted + 1]` (past the end when there is none)."""
    past_end = torch.full_like(accepted, tokens.shape[1] + 1)
    if eos is None:
        return past_end
    columns = torch.arange(tokens.shape[1], device=tokens.device)[None, :]
    hits = torch.isin(tokens, eos.to(tokens.device)) & (columns <= accepted[:, None])
    return torch.where(hits, columns, past_end[:, None]).min(dim=1).values


def _kept(criteria: StoppingCriteriaList, rows: Rows, row: int, tokens: torch.LongTensor, scores: torch.Tensor,
          budget: int, accepted: int, eos_end: int, history: list[torch.Tensor] | None) -> tuple[int, bool]:
    """(How many of the round's new `tokens` row `row` keeps, whether the row is finished): its accepted
    candidates plus the target's token, cut at its length limit (`budget`), after its first EOS (`eos_end`
    tokens) and after the first token the stopping criteria stop it at, each token offered to them in order as
    the target alone would (`criteria.first_stop`; `history`: the row's earlier processed scores, if kept)."""
    count = min(accepted, budget, eos_end)
    finished = count == eos_end or count >= budget
    if criteria:
        before = rows.generate_view(row)
        sequence = torch.cat([before, tokens[:count].to(before.device)])
        seen = history + list(scores[:count].unbind(0)) if history is not None else None
        stop = first_stop(criteria, sequence, before.shape[0], seen, rows.prompt.shape[1])
        if stop is not None:
            count, finished = stop - before.shape[0], True
    return count, finished
