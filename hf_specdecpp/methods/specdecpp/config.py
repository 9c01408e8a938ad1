"""SpecDec++'s settings: the rejection threshold h and the bounds on candidates per round."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.validation import check_candidate_bounds, check_choice, check_int, check_probability

RECALIBRATE_MODES = ("never", "auto")
STOP_RULES = ("threshold", "cost-aware")


@dataclass(frozen=True)
class SpecDecPPConfig:
    """Stop drafting once the head's predicted P(at least one rejection) exceeds `threshold`.

    `threshold` and `max_candidates` default (None) to the head's calibrated policy when it was measured on
    the kind of device the draft runs on; otherwise to `DEFAULT_THRESHOLD` and `DEFAULT_MAX_CANDIDATES`.
    `recalibrate="auto"` re-calibrates the head's policy at first use on a kind of device other than the one it was
    measured on (a few seconds of timing, cached per device kind) when the head ships dev-set traces.
    `stop_rule="cost-aware"` replaces the threshold by `core.cost_aware.CostAwareStop`: draft on while the
    head's prediction, calibrated online, says one more token pays for its cost at the call's own rate (the costs
    of the head's policy, or of the re-calibration); `threshold` is then unused.
    """

    threshold: float | None = None
    min_candidates: int = 1
    max_candidates: int | None = None
    recalibrate: str = "never"
    stop_rule: str = "threshold"

    def __post_init__(self):
        check_probability("threshold", self.threshold, allow_none=True)
        check_int("min_candidates", self.min_candidates)
        check_int("max_candidates", self.max_candidates, allow_none=True)
        if self.max_candidates is not None:
            check_candidate_bounds(self.min_candidates, self.max_candidates)
        check_choice("recalibrate", self.recalibrate, RECALIBRATE_MODES)
        check_choice("stop_rule", self.stop_rule, STOP_RULES)
