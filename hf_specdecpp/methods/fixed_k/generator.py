"""Draft exactly K candidates per round (fewer only at EOS or at the length limit)."""

from __future__ import annotations

import torch

from ..base import ChainMethod
from .config import FixedKConfig


class NeverStop:
    """A stop rule that never stops a round early (the loop stops it at the cap, EOS or the length limit)."""

    needs_hidden_states = False

    def __init__(self, config: FixedKConfig | None = None):
        pass

    def start_round(self, batch_size: int) -> None:
        pass

    def __call__(self, input_ids, scores, *, hidden_states=None, step: int = 0) -> torch.BoolTensor:
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


class FixedKMethod(ChainMethod):
    """Fixed K, the classic speculative decoding baseline: draft exactly `num_candidates` (K) tokens per round;
    stop earlier only at EOS or at the length limit.

    Args:

    Example:

    ```python
    target.generate(**inputs, assistant_model=draft, candidate_generator=FixedKMethod(num_candidates=4))
    ```
    """

    config_class = FixedKConfig
    rule_class = NeverStop


FixedLengthCandidateGenerator = FixedKMethod
"""The former name of `FixedKMethod` (kept working)."""
