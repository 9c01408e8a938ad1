"""SpecDec++'s settings: the rejection threshold h and the bounds on candidates per round."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

from ...core.cost_aware import StopRuleName
from ...core.validation import check_candidate_bounds, check_int, check_probability
from ..config_base import MethodConfig, document_fields

RecalibrateMode = Literal["never", "auto"]
RECALIBRATE_MODES = get_args(RecalibrateMode)


@document_fields
@dataclass(frozen=True)
class SpecDecPPConfig(MethodConfig):
    """Stop drafting once the head's predicted P(at least one rejection) exceeds `threshold` (or, with
    `stop_rule="cost-aware"`, when one more token no longer pays for its cost).

    `threshold` and `max_candidates` default (None) to the head's calibrated policy when it was measured on
    the kind of device the draft runs on; otherwise to `DEFAULT_THRESHOLD` and `DEFAULT_MAX_CANDIDATES`.
    """

    method: ClassVar[str] = "specdec++"

    threshold: float | None = field(default=None, metadata={"help": (
        "h in (0, 1): stop drafting once the predicted P(any rejection) exceeds it. None: the head's calibrated "
        "policy for the draft's kind of device (and dtype), else the policy's h with a warning, else 0.7.")})
    min_candidates: int = field(default=1, metadata={"help": "Fewest candidates drafted per round (>= 1)."})
    max_candidates: int | None = field(default=None, metadata={"help": (
        "Most candidates drafted per round. None: the policy's cap when it was calibrated on this kind of device, "
        "else 20.")})
    recalibrate: RecalibrateMode = field(default="never", metadata={"help": (
        "'auto' re-calibrates the head's policy at first use on a kind of device other than the one it was "
        "measured on (seconds; needs a head with dev-set traces) and caches it per device kind; 'never' does not.")})
    stop_rule: StopRuleName = field(default="threshold", metadata={"help": (
        "'threshold': the paper's rule with h. 'cost-aware': draft on while the head's prediction, calibrated "
        "online during the call (from the fit to its dev traces), says one more token pays for its cost at the "
        "call's own tokens-per-cost rate (core.cost_aware; the costs of the head's policy or of the "
        "re-calibration); threshold is then unused.")})

    def __post_init__(self):
        super().__post_init__()
        check_probability("threshold", self.threshold, allow_none=True)
        check_int("min_candidates", self.min_candidates)
        check_int("max_candidates", self.max_candidates, allow_none=True)
        if self.max_candidates is not None:
            check_candidate_bounds(self.min_candidates, self.max_candidates)
