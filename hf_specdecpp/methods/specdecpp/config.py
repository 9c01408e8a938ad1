"""SpecDec++'s settings: the rejection threshold h and the bounds on candidates per round."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

from ...core.cost_aware import StopRuleName
from ...core.validation import check_candidate_bounds, check_int, check_probability
from ..config_base import MethodConfig, document_fields
from .estimator import EstimatorName

RecalibrateMode = Literal["never", "auto"]
RECALIBRATE_MODES = get_args(RecalibrateMode)


@document_fields
@dataclass(frozen=True)
class SpecDecPPConfig(MethodConfig):
    """Stop drafting when one more token no longer pays for its cost (`stop_rule="cost-aware"`, the default), or
    once the head's predicted P(at least one rejection) exceeds `threshold` (`stop_rule="threshold"`, the paper's
    rule; the default when `threshold` is given).

    `threshold` and `max_candidates` default (None) to the head's calibrated policy when it was measured on
    the kind of device the draft runs on; otherwise to `DEFAULT_THRESHOLD` and `DEFAULT_MAX_CANDIDATES`.
    """

    method: ClassVar[str] = "specdec++"

    threshold: float | None = field(default=None, metadata={"help": (
        "h in (0, 1) for the threshold rule: stop drafting once the predicted P(any rejection) exceeds it (giving it "
        "selects that rule unless stop_rule says otherwise). None: the head's calibrated policy for the draft's kind "
        "of device (and dtype), else the policy's h with a warning, else 0.7.")})
    min_candidates: int = field(default=1, metadata={"help": "Fewest candidates drafted per round (>= 1)."})
    max_candidates: int | None = field(default=None, metadata={"help": (
        "Most candidates drafted per round. None: the policy's cap when it was calibrated on this kind of device, "
        "else 20.")})
    recalibrate: RecalibrateMode = field(default="never", metadata={"help": (
        "'auto' re-calibrates the head's policy at first use on a kind of device other than the one it was "
        "measured on (seconds; needs a head with dev-set traces) and caches it per device kind; 'never' does not.")})
    stop_rule: StopRuleName | None = field(default=None, metadata={"help": (
        "'cost-aware' (the default unless `threshold` is given): draft on while one more token's predicted "
        "acceptance, calibrated online during the call, says it pays for its cost at the call's own tokens-per-cost "
        "rate (core.cost_aware; the costs of the head's policy or of the re-calibration). 'threshold': the "
        "paper's rule with h (the default when `threshold` is given).")})
    estimator: EstimatorName = field(default="auto", metadata={"help": (
        "What the cost-aware rule reads: 'head' (the head's prediction), 'top1' (the draft's top-1 probability) "
        "or 'auto', whichever predicts the head's dev traces better once calibrated (top-1 for both shipped "
        "heads; the head when it has no traces). The threshold rule always reads the head.")})

    def __post_init__(self):
        super().__post_init__()
        check_probability("threshold", self.threshold, allow_none=True)
        check_int("min_candidates", self.min_candidates)
        check_int("max_candidates", self.max_candidates, allow_none=True)
        if self.max_candidates is not None:
            check_candidate_bounds(self.min_candidates, self.max_candidates)
        if self.stop_rule is None:  # resolved here so that a saved config names the rule it ran
            object.__setattr__(self, "stop_rule", "threshold" if self.threshold is not None else "cost-aware")
        if self.estimator != "auto" and self.stop_rule == "threshold":
            raise ValueError(f"estimator={self.estimator!r} applies to stop_rule='cost-aware'; the threshold rule "
                             "always reads the head (leave estimator='auto')")
