"""The per-call `CandidateGenerator` that puts a chain method into transformers' own assisted decoding.

transformers builds a candidate generator for every assisted generate() call and asks it for candidates
each round (`get_candidates`), then reports how many the target accepted (`update_candidate_strategy`). This
one drafts with the method's `StopRule` through a `DraftSession` (direct forward passes over the draft's
cache); transformers verifies, samples and keeps the target's cache. One sequence per call, as transformers'
assisted decoding requires.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformers.generation.candidate_generator import CandidateGenerator

from .drafting import DraftSession, notify_round
from .stats import SpeculationStats

if TYPE_CHECKING:
    from .call import CallContext
    from .chain import ChainSpec


class ChainCandidateGenerator(CandidateGenerator):
    """Drafts a chain per round for transformers' assisted decoding; `stats` describe this call only."""

    requires_model_outputs = False

    def __init__(self, ctx: CallContext, spec: ChainSpec, input_ids: torch.LongTensor,
                 attention_mask: torch.Tensor | None):
        self.ctx = ctx
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
        prefixes = [input_ids[0]] if self.ctx.processors_read_ids else None
        drafted = self.session.draft_round(input_ids, [length], [max_new], self.rule, self.spec.min_candidates,
                                           prefixes)
        # one sequence: the round ended when that row stopped, so it drafted exactly `steps` candidates
        self._drafted = drafted.steps
        candidates = drafted.tokens.to(input_ids.device)
        return torch.cat([input_ids, candidates], dim=1), drafted.scores

    def update_candidate_strategy(self, input_ids: torch.LongTensor, scores: torch.Tensor, num_matches: int):
        """Record the round (and tell the stop rule); the draft's cache stays valid up to the accepted candidates."""
        accepted = int(num_matches)
        if self._drafted:
            self.session.finish_round([accepted])
        self.stats.record_round({0: self._drafted}, {0: accepted})
        notify_round(self.rule, [self._drafted], [accepted])
        self.stats.draft_forwards = self.session.forwards
        self.stats.set_new_tokens([input_ids.shape[1] - self.prompt_length])
