"""DySpec's settings: the node budget per round, an optional depth limit and draft/target cost ratio."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.validation import check_int, check_number


@dataclass(frozen=True)
class DySpecConfig:
    """`budget`: drafted tree nodes per round (>= 1); `max_depth`: optional limit on the tree depth (tokens accepted
    per round); `cost_ratio`: optional draft step / target step, which stops growing the tree once another level
    of draft passes cannot pay for itself."""

    budget: int = 16
    max_depth: int | None = None
    cost_ratio: float | None = None

    def __post_init__(self):
        check_int("budget", self.budget)
        check_int("max_depth", self.max_depth, allow_none=True)
        check_number("cost_ratio", self.cost_ratio, 0.0, None, low_open=True, allow_none=True)
