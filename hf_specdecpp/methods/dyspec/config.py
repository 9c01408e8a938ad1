"""DySpec's settings: the node budget per round, an optional depth limit and draft/target cost ratio."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...core.validation import check_int, check_number
from ..config_base import MethodConfig, document_fields


@document_fields
@dataclass(frozen=True)
class DySpecConfig(MethodConfig):
    """Grow a draft tree of up to `budget` nodes per round and verify it in one target pass."""

    method: ClassVar[str] = "dyspec"

    budget: int = field(default=16, metadata={"help": (
        "Drafted tree nodes per round (>= 1); 1 drafts one token per round.")})
    max_depth: int | None = field(default=None, metadata={"help": (
        "Optional limit on the tree depth (tokens accepted per round).")})
    cost_ratio: float | None = field(default=None, metadata={"help": (
        "Optional draft step / target step time: growth stops once another level of draft passes cannot raise "
        "the expected tokens per unit of time.")})

    def __post_init__(self):
        super().__post_init__()
        check_int("budget", self.budget)
        check_int("max_depth", self.max_depth, allow_none=True)
        check_number("cost_ratio", self.cost_ratio, 0.0, None, low_open=True, allow_none=True)
