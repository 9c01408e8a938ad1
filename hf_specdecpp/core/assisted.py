"""The per-call `CandidateGenerator` that puts a chain method into transformers' own assisted decoding.

transformers builds a candidate generator for every assisted generate() call and asks it for candidates
each round (`get_candidates`), then reports how many the target accepted (`update_candidate_strategy`). This
one drafts with the method's `StopRule` through a `DraftSession` (direct forward passes over the draft's
cache); transformers verifies, samples and keeps the target's cache. One sequence per call, as transformers'
assisted decoding requires.

Stopping criteria: transformers asks them once per round, about the whole sequence, so a criterion that would
stop the target alone in the middle of a round is seen too late. This generator offers every token to them
in order (`processing.first_stop`): a round's candidates end at the first one that would stop the sequence, and
when the target accepted a token that stops it before the round's last one, `stop_length` records where the
sequence ends; the generate() patch then stops transformers' loop (`StopAfterCut`) and cuts the output there
(`cut_output`), so the result is the target alone's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.candidate_generator import CandidateGenerator
from transformers.generation.streamers import BaseStreamer

from .cache import rollback
from .compat import output_cache
from .drafting import DraftSession, notify_round
from .chain import SpeculationStats
from .processing import RowPrefix, criteria_to_offer, first_stop, processors_for_row

if TYPE_CHECKING:
    from .chain import CallContext, ChainSpec


class ChainCandidateGenerator(CandidateGenerator):
    """Drafts a chain per round for transformers' assisted decoding; `stats` describe this call only.

    Args:
        ctx (`CallContext`): the call's models and settings.
        spec (`ChainSpec`): the method's stop rule factory and candidate bounds.
        input_ids (`torch.LongTensor` of shape `(1, P)`): the prompt.
        attention_mask (`torch.Tensor` of shape `(1, P)`, *optional*): 1 at real tokens.
        stopping_criteria (`StoppingCriteriaList`, *optional*): the call's criteria, offered token by token.
    """

    requires_model_outputs = False

    def __init__(self, ctx: CallContext, spec: ChainSpec, input_ids: torch.LongTensor,
                 attention_mask: torch.Tensor | None, stopping_criteria: StoppingCriteriaList | None = None):
        self.ctx = ctx
        self.row_processors = processors_for_row(ctx.logits_processor, 0)
        self.criteria = criteria_to_offer(stopping_criteria, ctx.max_length, ctx.eos_token_ids)
        self.stop_length: int | None = None  # where a criterion stopped the sequence inside a round
        self.round_cap: int | None = None  # the most tokens this round may add (a candidate stops the sequence)
        self._round_start = input_ids.shape[1]
        self._history: list[torch.Tensor] | None = [] if ctx.output_scores else None
        self.spec = spec
        self.rule = spec.new_rule()
        # transformers reads the candidates' scores (speculative sampling, assistant_ensemble_weight): keep them
        self.session = DraftSession(ctx.draft, ctx.logits_processor, ctx.vocab, ctx.do_sample, ctx.eos_token_ids, 1,
                                    keep_scores=True)
        self.pads = int(input_ids.shape[1] - attention_mask.sum()) if attention_mask is not None else 0
        self.prompt_length = input_ids.shape[1]
        self.stats = SpeculationStats.for_batch(1)
        self.assistant_model = ctx.draft  # read by some transformers releases after decoding
        self._drafted = 0

    @property
    def num_drafting_tokens(self) -> int:
        """The most candidates one round may draft (transformers 5.25+ sizes the target cache's rollback history
        for linear-attention layers by it)."""
        return int(self.spec.max_candidates)

    @torch.no_grad()
    def get_candidates(self, input_ids: torch.LongTensor, **kwargs) -> tuple[torch.LongTensor, torch.Tensor | None]:
        """The sequence plus this round's candidates, and the processed draft scores they were drawn from."""
        max_new = min(self.spec.max_candidates, self.ctx.max_length - input_ids.shape[1] - 1)
        if max_new < 1:
            self._drafted = 0
            return input_ids, None
        length = input_ids.shape[1] - self.pads
        prefixes = [RowPrefix(input_ids[0], self.row_processors)] if self.ctx.processors_read_ids else None
        drafted = self.session.draft_round(input_ids, [length], [max_new], self.rule, self.spec.min_candidates,
                                           prefixes)
        # one sequence: the round ended when that row stopped, so it drafted exactly `steps` candidates
        candidates = drafted.tokens.to(input_ids.device)
        self._round_start, self.round_cap = input_ids.shape[1], None
        if self._history is None:  # criteria see scores=None, as from generate(); else they wait for the target's
            stop = first_stop(self.criteria, torch.cat([input_ids[0], candidates[0]]), input_ids.shape[1])
            if stop is not None:  # no candidate after one that stops the sequence, nor the target's token
                self.round_cap = stop - input_ids.shape[1]
                candidates = candidates[:, : self.round_cap]
        self._drafted = candidates.shape[1]
        return torch.cat([input_ids, candidates], dim=1), drafted.scores[:, : self._drafted]

    def update_candidate_strategy(self, input_ids: torch.LongTensor, scores: torch.Tensor, num_matches: int):
        """Record the round (and tell the stop rule); the draft's cache stays valid up to the accepted candidates."""
        accepted = int(num_matches)
        added = input_ids.shape[1] - self._round_start
        if self._history is None:  # the candidates were offered before verification: only the round's cap can stop
            stop = self._round_start + self.round_cap if self.round_cap is not None and added > self.round_cap else None
        else:  # offered now, with the target's scores; the last token is transformers' to offer
            self._history.extend(scores[0, :added].unbind(0))
            stop = first_stop(self.criteria, input_ids[0, :-1], self._round_start, self._history, self.prompt_length)
        if stop is not None:
            self.stop_length, accepted = stop, stop - self._round_start - 1
        if self._drafted:
            self.session.finish_round([accepted])
        self.stats.record_round({0: self._drafted}, {0: accepted})
        notify_round(self.rule, [self._drafted], [accepted])
        self.stats.draft_forwards = self.session.forwards
        self.stats.set_new_tokens([(self.stop_length or input_ids.shape[1]) - self.prompt_length])


class StopAfterCut(StoppingCriteria):
    """Stops transformers' assisted loop once the call's candidate generator cut the sequence inside a round.

    Added to the call's stopping criteria by the generate() patch; `source.generator` is the call's
    `ChainCandidateGenerator` (None until transformers asks for it).
    """

    def __init__(self, source):
        self.source = source

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        generator = self.source.generator
        stopped = generator is not None and generator.stop_length is not None
        return torch.full((input_ids.shape[0],), stopped, dtype=torch.bool, device=input_ids.device)


class CutStreamer(BaseStreamer):
    """Passes a streamer what transformers' assisted loop streams, less a round's tokens past its cut."""

    def __init__(self, streamer: BaseStreamer, source):
        self.streamer = streamer
        self.source = source
        self._prompt_sent = False

    def put(self, value: torch.Tensor) -> None:
        generator = self.source.generator
        if self._prompt_sent and generator is not None and generator.round_cap is not None:
            value = value[..., : generator.round_cap]
        self._prompt_sent = True
        self.streamer.put(value)

    def end(self) -> None:
        self.streamer.end()


def cut_output(output, length: int, prompt_length: int):
    """generate()'s output cut where a stopping criterion stopped the sequence inside a round.

    Args:
        output (`torch.LongTensor` of shape `(1, T)` or a generate() output object): what generate() returned.
        length (`int`): the sequence's length (prompt included) after the cut.
        prompt_length (`int`): the prompt's length.

    Returns:
        The same kind of object: the sequence, the per-token tuples (scores, logits, attentions, hidden states)
        and the returned cache as the target alone leaves them.
    """
    if isinstance(output, torch.Tensor):
        return output[:, :length]
    new_tokens = length - prompt_length
    for name in ("scores", "logits", "attentions", "hidden_states"):
        value = getattr(output, name, None)
        if isinstance(value, tuple):
            setattr(output, name, value[:new_tokens])
    cache = output_cache(output)
    if cache is not None and hasattr(cache, "get_seq_length"):
        rollback(cache, cache.get_seq_length() - (length - 1))
    output.sequences = output.sequences[:, :length]
    return output
