"""hf_specdecpp's own draft-then-verify loop for chains of candidates, for one sequence or a batch.

generate() prepares everything (generation config, logits processors, stopping criteria, KV cache) and this
loop decodes: through `custom_generate=`, or through the patch when transformers' own assisted decoding cannot
serve the call (a batch, several return sequences). Every round:

1. the draft proposes candidates for every active row (`drafting.DraftSession.draft_round`, the method's stop
   rule);
2. the target reads each row's uncached tokens and all candidates in ONE forward pass (`_verify_pass`, through
   its `drafting.ModelSession`; generate()'s logits processors applied position by position, `processing.py`);
3. each row keeps its accepted candidates plus one target token (`verify_greedy` or `verify_sampling`, below),
   cut at EOS, at its length limit and at the first token a stopping criterion stops at (`_kept`); finished rows
   leave the batch (they cost nothing afterwards);
4. both caches drop what was rejected (`ModelSession.align` at the next round's start, through `cache.py`; rows
   re-aligned when they accepted different numbers).

This file holds what one call of the loop reads besides the sessions: the call's fixed facts (`CallContext`),
the rows' tokens (`Rows`), the verification rules and the call's statistics (`SpeculationStats`). A round
reads four files: this one, `drafting.py`, `processing.py` and `cache.py`.

Host synchronisations, counting what a GPU waits on (reads of device values and blocking host-to-device copies,
`hf_specdecpp.bench.syncs`): one per drafted token (the stop decision) and one per round (the round's outcome),
whatever the batch size and the number of layers, plus one per accepted token when the call has stopping criteria
beyond its length and EOS limits (each accepted token is offered to them in order, `processing.first_stop`). The
round's host integers (lengths, budgets, kept rows) reach the device through staged non-blocking copies
(`core.device.to_device`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

from .device import to_device
from .drafting import DraftRound, DraftSession, ModelSession, last_logits, notify_round, notify_rows
from .pair import VocabMap, vocab_map
from .processing import (
    RowPrefix,
    criteria_to_offer,
    first_stop,
    process_positions,
    processors_for_row,
    reads_token_ids,
)

if TYPE_CHECKING:
    from transformers import GenerationConfig, LogitsProcessorList, PreTrainedModel, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    from .drafting import StopRule


# ---------------------------------------------------------------------------------------------------------------
# What one generate() call fixes for its whole duration: the models, decoding settings, processors, limits
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class CallContext:
    """The fixed facts of one generate() call, shared by the draft session, the verifier and the loop.

    Built once per call by `CallContext.create`; never changed afterwards.
    """

    target: PreTrainedModel
    draft: PreTrainedModel
    vocab: VocabMap
    logits_processor: LogitsProcessorList
    do_sample: bool
    eos_token_ids: torch.Tensor | None
    pad_token_id: int
    max_length: int
    streamer: BaseStreamer | None = None
    output_scores: bool = False
    output_logits: bool = False
    return_dict: bool = False

    @classmethod
    def create(cls, target: PreTrainedModel, draft: PreTrainedModel, generation_config: GenerationConfig,
               logits_processor: LogitsProcessorList, streamer: BaseStreamer | None = None,
               tokenizer: Any = None, assistant_tokenizer: Any = None) -> "CallContext":
        """The context of one call, from what generate() prepared. The pair is not checked here: the caller ran
        `check_pair` (through the method's `check_models`) once before.

        Args:
            target (`PreTrainedModel`): the model generate() was called on.
            draft (`PreTrainedModel`): the draft model.
            generation_config (`GenerationConfig`): the call's effective generation config (its EOS and padding
                tokens, `max_length`, `do_sample`, `return_dict_in_generate`, `output_scores`/`output_logits`).
            logits_processor (`LogitsProcessorList`): the processors generate() built for the call.
            streamer (`BaseStreamer`, *optional*): receives the prompt, then every round's new tokens.
            tokenizer (*optional*): unused here (the pair check reads it); accepted for the callers' symmetry.
            assistant_tokenizer (*optional*): the draft's tokenizer (its unknown token is the draft's stand-in).

        Returns:
            `CallContext`: with `eos_token_ids` a 1D tensor (or None) and `pad_token_id` an int (the first EOS
            token when the config names no padding token, else 0).
        """
        vocab = vocab_map(target, draft, assistant_tokenizer)  # the pair was checked before the call (check_pair)
        eos = getattr(generation_config, "_eos_token_tensor", None)
        if eos is None and generation_config.eos_token_id is not None:
            ids = generation_config.eos_token_id
            eos = torch.tensor([ids] if isinstance(ids, int) else list(ids))
        pad = generation_config.pad_token_id
        if pad is None:
            pad = int(eos.reshape(-1)[0]) if eos is not None and eos.numel() else 0
        return_dict = bool(generation_config.return_dict_in_generate)
        return cls(
            target=target, draft=draft, vocab=vocab, logits_processor=logits_processor,
            do_sample=bool(generation_config.do_sample), eos_token_ids=eos,
            pad_token_id=int(pad.reshape(-1)[0]) if isinstance(pad, torch.Tensor) else int(pad),
            max_length=int(generation_config.max_length), streamer=streamer,
            output_scores=return_dict and bool(generation_config.output_scores),
            output_logits=return_dict and bool(getattr(generation_config, "output_logits", False)),
            return_dict=return_dict,
        )

    @property
    def processors_read_ids(self) -> bool:
        """Whether a logits processor reads token ids (then each row's prefix is passed to it)."""
        return reads_token_ids(self.logits_processor)


# ---------------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class ChainSpec:
    """What the loop needs from a chain method.

    Args:
        new_rule (`Callable[[], StopRule]`): builds a fresh stop rule for one call.
        min_candidates (`int`): candidates drafted per round before the rule may stop a row.
        max_candidates (`int`): the most candidates per row and round.
    """

    new_rule: Callable[[], StopRule]
    min_candidates: int
    max_candidates: int


@dataclass
class DecodeResult:
    """What a decoding loop returns.

    Args:
        sequences (`torch.LongTensor` of shape `(B, P + N)`): prompts and new tokens, shorter rows padded at the end.
        stats (`SpeculationStats`): the call's statistics.
        scores (`tuple[torch.Tensor]`, *optional*): per new token, processed scores `(1, V)` (`output_scores`).
        logits (`tuple[torch.Tensor]`, *optional*): per new token, raw target logits `(1, V)` (`output_logits`).
        cache (*optional*): the target's cache, as generate() returns it.
        draft_cache (*optional*): the draft's cache, for inspection in tests (not part of generate()'s output).
    """

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
        """Rows of a left-padded `prompt` `(B, P)`; `attention_mask` `(B, P)` marks its real tokens (None: all)."""
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
        """Append `tokens` (1D) to row `row`."""
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
    """Decode with a chain method in rounds of draft, verify, accept, cache trim (see the module docstring).

    Args:
        ctx (`CallContext`): the call's models and settings.
        spec (`ChainSpec`): the method's stop rule factory and candidate bounds.
        input_ids (`torch.LongTensor` of shape `(B, P)`): the prompts, left-padded.
        attention_mask (`torch.Tensor` of shape `(B, P)`, *optional*): 1 at real tokens; None when unpadded.
        stopping_criteria (`StoppingCriteriaList`): the call's criteria; each accepted token is offered to them.
        target_cache (*optional*): the empty cache generate() prepared (used for models with state layers).

    Returns:
        `DecodeResult`: sequences `(B, P + N)`, statistics, and scores/logits/cache when the call returns them.
    """
    batch = input_ids.shape[0]
    rows = Rows.start(input_ids, attention_mask)
    stats = SpeculationStats.for_batch(batch)
    target = ModelSession(ctx.target, "target", batch, given_cache=target_cache)
    draft = DraftSession(ctx.draft, ctx.logits_processor, ctx.vocab, ctx.do_sample, ctx.eos_token_ids, batch)
    rule = spec.new_rule()
    offered = criteria_to_offer(stopping_criteria, ctx.max_length, ctx.eos_token_ids)
    per_row = [processors_for_row(ctx.logits_processor, b) for b in range(batch)]
    active, scores_out, logits_out = list(range(batch)), [], []  # scores/logits per new token, when returned
    if ctx.streamer is not None:
        ctx.streamer.put(input_ids.cpu())
    while active:
        budget = [ctx.max_length - input_ids.shape[1] - rows.counts[b] for b in active]
        prefixes = [RowPrefix(rows.generate_view(b), per_row[b]) for b in active] if ctx.processors_read_ids else None
        lengths, layout = [rows.real[b].shape[0] for b in active], rows.layout(active, ctx.pad_token_id)
        drafted = _draft(draft, layout, lengths, budget, rule, spec, prefixes)
        raw, scores = _verify_pass(ctx, target, layout, lengths, drafted, prefixes)
        new_tokens, (drafted_list, accepted_list, eos_list) = _accept(ctx, spec, drafted, scores, budget)
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
        active = _leave(active, finished, (target, draft), rule)
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


def _accept(ctx: CallContext, spec: ChainSpec, drafted: DraftRound, scores: torch.Tensor,
            budget: list[int]) -> tuple[torch.LongTensor, list[list[int]]]:
    """The round's verdict: every row's new tokens `(B, S + 1)` (accepted candidates, then the target's token),
    and on the host (the round's one read) per row: candidates that counted, candidates accepted, the index of
    the first EOS among the new tokens (past the end when there is none)."""
    room = to_device([min(spec.max_candidates, left - 1) for left in budget], scores.device)
    candidate_lengths = torch.minimum(drafted.lengths.to(scores.device), room.clamp(min=0))
    accepted, new_tokens = _select(ctx, drafted, scores, candidate_lengths)
    eos_at = _first_eos(new_tokens, accepted, ctx.eos_token_ids)
    return new_tokens, torch.stack([candidate_lengths, accepted, eos_at]).tolist()


def _leave(active: list[int], finished: list[int], sessions: tuple[ModelSession, ...], rule: StopRule) -> list[int]:
    """The rows (call indices) still active once the `finished` ones (positions in `active`) leave the batch; the
    sessions and the rule drop them too."""
    if not finished:
        return active
    keep = [i for i in range(len(active)) if i not in finished]
    if keep:
        for session in sessions:
            session.select_rows(keep)
        notify_rows(rule, keep)
    return [active[i] for i in keep]


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


# ---------------------------------------------------------------------------------------------------------------
# Verification: greedy matching and speculative sampling, batched by row
# ---------------------------------------------------------------------------------------------------------------
# Greedy keeps the longest prefix of candidates that equal the target's argmax and adds the target's own token.
# Sampling accepts candidate i with probability min(1, p_i(x_i) / q_i(x_i)), where q_i is the processed draft
# distribution the token was drawn from and p_i the processed target distribution; at the first rejection it
# draws from the residual max(p_i - q_i, 0) (normalised), and after the row's last candidate from p itself.
# Both keep the target's output exactly (Leviathan et al., 2023; Chen et al., 2023). Rows may draft different
# numbers of candidates (`lengths`); positions past a row's length are never accepted.

def verify_greedy(candidates: torch.LongTensor, target_scores: torch.Tensor,
                  lengths: torch.LongTensor) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Greedy verification: keep the candidates that equal the target's argmax, then add the target's token.

    Args:
        candidates (`torch.LongTensor` of shape `(B, K)`): the drafted tokens.
        target_scores (`torch.Tensor` of shape `(B, K + 1, V)`): processed target scores at every candidate
            position and after the last one.
        lengths (`torch.LongTensor` of shape `(B,)`): candidates per row (later positions are never accepted).

    Returns:
        `tuple[torch.LongTensor, torch.LongTensor]`: accepted counts `(B,)` and the target's token after the
        accepted prefix `(B,)`.
    """
    chosen = target_scores.argmax(dim=-1)  # (B, K + 1)
    accepted = accepted_prefix(candidates == chosen[:, :-1], lengths)
    return accepted, chosen.gather(1, accepted[:, None]).squeeze(1)


def verify_sampling(candidates: torch.LongTensor, draft_probs: torch.Tensor, target_probs: torch.Tensor,
                    lengths: torch.LongTensor) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Speculative sampling: accept candidate i with probability min(1, p_i / q_i), then draw the next token.

    Args:
        candidates (`torch.LongTensor` of shape `(B, K)`): the drafted tokens.
        draft_probs (`torch.Tensor` of shape `(B, K, V)`): the normalised processed draft distributions the
            candidates were drawn from.
        target_probs (`torch.Tensor` of shape `(B, K + 1, V)`): the normalised processed target distributions.
        lengths (`torch.LongTensor` of shape `(B,)`): candidates per row (later positions are never accepted).

    Returns:
        `tuple[torch.LongTensor, torch.LongTensor]`: accepted counts `(B,)` and the next token `(B,)` (from the
        residual at the first rejection, else from the target's distribution after the last candidate).
    """
    batch, k = candidates.shape
    if k == 0:
        return candidates.new_zeros(batch), torch.multinomial(target_probs[:, 0], 1).squeeze(1)
    index = candidates.unsqueeze(-1)
    p = target_probs[:, :k].gather(-1, index).squeeze(-1)
    q = draft_probs.gather(-1, index).squeeze(-1)
    ratio = torch.where(q > 0, p / q.clamp_min(torch.finfo(q.dtype).tiny), torch.zeros_like(p))
    draws = torch.rand(ratio.shape, device=ratio.device, dtype=ratio.dtype)
    accepted = accepted_prefix(draws <= ratio, lengths)
    rows = torch.arange(batch, device=candidates.device)
    p_next = target_probs[rows, accepted]  # p at the first rejection, or after the last candidate
    q_next = torch.cat([draft_probs, torch.zeros_like(draft_probs[:, :1])], dim=1)[rows, accepted]
    rejected = (accepted < lengths).unsqueeze(-1)  # draw from the residual only where a candidate was rejected
    residual = torch.where(rejected, (p_next - q_next).clamp_min(0.0), p_next)
    mass = residual.sum(-1, keepdim=True)
    # p == q_i exactly leaves no residual mass; that rejection then had probability 0, so any token is fine.
    residual = torch.where(mass > 0, residual, p_next)
    return accepted, torch.multinomial(residual, 1).squeeze(1)


def accepted_prefix(matches: torch.Tensor, lengths: torch.LongTensor) -> torch.LongTensor:
    """Per row, the number of leading True entries of `matches`, at most the row's length.

    Args:
        matches (`torch.Tensor` of shape `(B, K)`, bool): whether each candidate is accepted on its own.
        lengths (`torch.LongTensor` of shape `(B,)`): candidates per row.

    Returns:
        `torch.LongTensor` of shape `(B,)`: accepted counts.
    """
    k = matches.shape[1]
    within = torch.arange(k, device=matches.device)[None, :] < lengths[:, None]
    return (matches & within).long().cumprod(dim=1).sum(dim=1)


# ---------------------------------------------------------------------------------------------------------------
# Statistics of a call: totals and one record per sequence of the batch
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class RowStats:
    """Counts of one sequence (row) of a batch: rounds it took part in, its drafted/accepted tokens, its lengths.

    Args:
        rounds (`int`): rounds the row took part in.
        drafted_tokens (`int`) / accepted_tokens (`int`): its candidates proposed / accepted by the target.
        new_tokens (`int`): tokens added to the row.
        candidate_lengths (`list[int]`) / accepted_lengths (`list[int]`): per round, its candidates / accepted ones.
    """

    rounds: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    new_tokens: int = 0
    candidate_lengths: list[int] = field(default_factory=list)
    accepted_lengths: list[int] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0

    def record_round(self, drafted: int, accepted: int) -> None:
        self.rounds += 1
        self.drafted_tokens += drafted
        self.accepted_tokens += accepted
        self.candidate_lengths.append(drafted)
        self.accepted_lengths.append(accepted)


@dataclass
class SpeculationStats:
    """Deterministic counts of one generate() call.

    - `rounds`: draft-then-verify rounds (one batched target forward pass each);
    - `drafted_tokens` / `accepted_tokens`: candidates proposed / accepted by the target, summed over rows;
    - `target_forwards` / `draft_forwards`: forward passes of each model (a pass covers every active row);
    - `candidate_lengths` / `accepted_lengths`: per round, candidates and accepted candidates (summed over rows);
    - `new_tokens`: tokens added to the sequences (accepted + one target token per row and round, after cuts);
    - `rows`: the same counts per sequence of the batch (`RowStats`); one row for batch size 1.

    Tree decoding (DySpec) also records `tree_sizes` (drafted nodes of every round) and `accepted_child_ranks`
    (for every round, the sibling rank of each accepted node: 0 for its parent's first child, ...).

    Args:
        The fields above, each an `int` or a `list[int]` (`rows`: a `list[RowStats]`); all default to empty.
    """

    rounds: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    target_forwards: int = 0
    draft_forwards: int = 0
    new_tokens: int = 0
    candidate_lengths: list[int] = field(default_factory=list)
    accepted_lengths: list[int] = field(default_factory=list)
    tree_sizes: list[int] = field(default_factory=list)
    accepted_child_ranks: list[list[int]] = field(default_factory=list)
    rows: list[RowStats] = field(default_factory=list)

    @classmethod
    def for_batch(cls, batch_size: int) -> "SpeculationStats":
        """Empty statistics with one `RowStats` per sequence of a batch of `batch_size`."""
        return cls(rows=[RowStats() for _ in range(batch_size)])

    def record_round(self, drafted: dict[int, int], accepted: dict[int, int]) -> None:
        """Count one round (one target pass).

        Args:
            drafted (`dict[int, int]`): per active row (its index in the call's batch), candidates proposed.
            accepted (`dict[int, int]`): per active row, candidates the target accepted.
        """
        self.rounds += 1
        self.target_forwards += 1
        total_drafted, total_accepted = sum(drafted.values()), sum(accepted.values())
        self.drafted_tokens += total_drafted
        self.accepted_tokens += total_accepted
        self.candidate_lengths.append(total_drafted)
        self.accepted_lengths.append(total_accepted)
        for row, count in drafted.items():
            self.rows[row].record_round(count, accepted[row])

    def set_new_tokens(self, per_row: list[int]) -> None:
        """Record the tokens each row added (`per_row[b]`) and their total."""
        for row, count in enumerate(per_row):
            self.rows[row].new_tokens = count
        self.new_tokens = sum(per_row)

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted candidates."""
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0

    @property
    def mean_accepted_per_round(self) -> float:
        """Accepted candidates per row and round."""
        row_rounds = sum(r.rounds for r in self.rows) or self.rounds
        return self.accepted_tokens / row_rounds if row_rounds else 0.0

    @property
    def target_forwards_per_token(self) -> float:
        return self.target_forwards / self.new_tokens if self.new_tokens else 0.0

    @property
    def draft_forwards_per_token(self) -> float:
        return self.draft_forwards / self.new_tokens if self.new_tokens else 0.0

    def to_dict(self) -> dict:
        """Every field and derived rate as plain JSON-serialisable values."""
        out = asdict(self)
        out.update(
            acceptance_rate=self.acceptance_rate,
            mean_accepted_per_round=self.mean_accepted_per_round,
            target_forwards_per_token=self.target_forwards_per_token,
            draft_forwards_per_token=self.draft_forwards_per_token,
        )
        return out

    def summary(self) -> str:
        """One human-readable line."""
        rows = f" over {len(self.rows)} sequences" if len(self.rows) > 1 else ""
        return (
            f"{self.new_tokens} new tokens{rows} in {self.rounds} rounds | drafted {self.drafted_tokens}, "
            f"accepted {self.accepted_tokens} ({self.acceptance_rate:.0%}) | "
            f"{self.mean_accepted_per_round:.2f} accepted/round | target fw/token "
            f"{self.target_forwards_per_token:.3f}, draft fw/token {self.draft_forwards_per_token:.3f}"
        )
