"""Draft exactly K candidates per round (fewer only at EOS or at the length limit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ...core.validation import check_int
from ..base import ChainMethod

if TYPE_CHECKING:
    from transformers import PreTrainedModel
    from transformers.generation.streamers import BaseStreamer


@dataclass(frozen=True)
class FixedKConfig:
    num_candidates: int = 4

    def __post_init__(self):
        check_int("num_candidates", self.num_candidates)

    @property
    def min_candidates(self) -> int:
        return self.num_candidates

    @property
    def max_candidates(self) -> int:
        return self.num_candidates


class NeverStop:
    """A stop rule that never stops a round early (the loop stops it at the cap, EOS or the length limit)."""

    needs_hidden_states = False

    def start_round(self, batch_size: int) -> None:
        pass

    def __call__(self, input_ids, scores, *, hidden_states=None, step: int = 0) -> torch.BoolTensor:
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


class FixedLengthCandidateGenerator(ChainMethod):
    """Draft exactly `num_candidates` (K) tokens per round; stop earlier only at EOS or at the length limit.

    Usage: `target.generate(**inputs, assistant_model=draft,
    candidate_generator=FixedLengthCandidateGenerator(num_candidates=4))`.
    """

    def __init__(self, num_candidates: int = 4, draft_model: PreTrainedModel | None = None,
                 streamer: BaseStreamer | None = None):
        super().__init__(FixedKConfig(num_candidates), draft_model, streamer)

    @property
    def num_candidates(self) -> int:
        return self.config.num_candidates

    def new_rule(self, ctx) -> NeverStop:
        return NeverStop()
