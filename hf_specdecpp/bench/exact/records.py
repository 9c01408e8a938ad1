"""What the exact mode keeps per prompt and configuration: the counts of one call, replayed or counted."""

from __future__ import annotations

from dataclasses import dataclass, field

REPLAY = "replay"
COUNTED = "counted"

RECORD_COLUMNS = ["prompt_id", "config", "seed", "source", "new_tokens", "rounds", "target_forwards",
                  "draft_forwards", "drafted_tokens", "accepted_tokens", "units", "speedup", "equal_to_target",
                  "candidate_lengths", "accepted_lengths"]


class RoundTotals:
    """Totals over `candidate_lengths` and `accepted_lengths` (one entry per round)."""

    candidate_lengths: list[int]
    accepted_lengths: list[int]

    @property
    def rounds(self) -> int:
        return len(self.candidate_lengths)

    @property
    def drafted_tokens(self) -> int:
        return sum(self.candidate_lengths)

    @property
    def accepted_tokens(self) -> int:
        return sum(self.accepted_lengths)


@dataclass
class ExactRecord(RoundTotals):
    """One call's counts: `source` REPLAY (greedy, exact by replay) or COUNTED (a real call, e.g. one seed of
    sampling, or a draft tree); `tree_sizes` for trees. `units` and `speedup` are filled from the cost curve."""

    prompt_id: str
    config: str
    source: str
    new_tokens: int
    target_forwards: int
    draft_forwards: int
    candidate_lengths: list[int] = field(default_factory=list)
    accepted_lengths: list[int] = field(default_factory=list)
    tree_sizes: list[int] = field(default_factory=list)
    seed: int | None = None
    equal_to_target: bool | None = None
    units: float | None = None  # cost in target decode steps (see `costs.cost_units`)

    @property
    def speedup(self) -> float | None:
        """Target-alone cost (one decode step per token) / this call's cost."""
        return self.new_tokens / self.units if self.units else None

    def row(self) -> dict:
        out = {k: getattr(self, k) for k in RECORD_COLUMNS}
        out["candidate_lengths"] = " ".join(map(str, self.candidate_lengths))
        out["accepted_lengths"] = " ".join(map(str, self.accepted_lengths))
        return out
