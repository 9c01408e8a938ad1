"""GammaTune's settings: the starting length, the smoothing of the moving average and the bounds on K."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...core.validation import check_candidate_bounds, check_number
from ..config_base import MethodConfig, document_fields


@document_fields
@dataclass(frozen=True)
class GammaTuneConfig(MethodConfig):
    """K per round from a moving average of the accepted counts (see `generator.py`'s module docstring)."""

    method: ClassVar[str] = "gammatune"

    initial: float = field(default=4.0, metadata={"help": "The smoothed length gamma every call starts from (> 0)."})
    smoothing: float = field(default=0.5, metadata={"help": (
        "Weight of the newest round in the moving average, in (0, 1].")})
    min_candidates: int = field(default=1, metadata={"help": "Fewest candidates drafted per round (>= 1)."})
    max_candidates: int = field(default=20, metadata={"help": "Most candidates drafted per round."})

    def __post_init__(self):
        super().__post_init__()
        check_number("initial", self.initial, 0.0, None, low_open=True)
        check_number("smoothing", self.smoothing, 0.0, 1.0, low_open=True)
        check_candidate_bounds(self.min_candidates, self.max_candidates)
