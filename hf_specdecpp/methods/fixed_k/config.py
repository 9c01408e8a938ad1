"""Fixed K's setting: the number of candidates drafted every round."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...core.validation import check_int
from ..config_base import MethodConfig, document_fields


@document_fields
@dataclass(frozen=True)
class FixedKConfig(MethodConfig):
    """Draft exactly `num_candidates` tokens per round (fewer only at EOS or at the length limit)."""

    method: ClassVar[str] = "fixed-k"

    num_candidates: int = field(default=4, metadata={"help": "K, the candidates drafted every round (>= 1)."})

    def __post_init__(self):
        super().__post_init__()
        check_int("num_candidates", self.num_candidates)

    @property
    def min_candidates(self) -> int:
        return self.num_candidates

    @property
    def max_candidates(self) -> int:
        return self.num_candidates
