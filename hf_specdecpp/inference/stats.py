"""Per-call statistics of speculative decoding, readable after generate() for benchmarks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SpeculationStats:
    """Deterministic counts of one generate() call.

    - `rounds`: draft-then-verify rounds (one target forward pass each);
    - `drafted_tokens` / `accepted_tokens`: candidates proposed / accepted by the target;
    - `target_forwards` / `draft_forwards`: forward passes of each model;
    - `candidate_lengths`: number of candidates of every round (0 when the round drafted nothing);
    - `accepted_lengths`: accepted candidates of every round;
    - `new_tokens`: tokens added to the sequence (accepted + one target token per round, after EOS/length cuts).

    Tree decoding (DySpec) also records `tree_sizes` (drafted nodes of every round; `candidate_lengths` holds the
    same numbers) and `accepted_child_ranks` (for every round, the sibling rank of each accepted node: 0 for its
    parent's first child, 1 for the second, ...).
    """

    rounds: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    target_forwards: int = 0
    draft_forwards: int = 0
    new_tokens: int = 0
    candidate_lengths: list[int] = field(default_factory=list)
    accepted_lengths: list[int] = field(default_factory=list)
    tree_sizes: list[int] = field(default_factory=list)
    accepted_child_ranks: list[list[int]] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted candidates."""
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0

    @property
    def mean_accepted_per_round(self) -> float:
        return self.accepted_tokens / self.rounds if self.rounds else 0.0

    @property
    def target_forwards_per_token(self) -> float:
        return self.target_forwards / self.new_tokens if self.new_tokens else 0.0

    @property
    def draft_forwards_per_token(self) -> float:
        return self.draft_forwards / self.new_tokens if self.new_tokens else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(
            acceptance_rate=self.acceptance_rate,
            mean_accepted_per_round=self.mean_accepted_per_round,
            target_forwards_per_token=self.target_forwards_per_token,
            draft_forwards_per_token=self.draft_forwards_per_token,
        )
        return out

    def summary(self) -> str:
        """One human-readable line."""
        return (
            f"{self.new_tokens} new tokens in {self.rounds} rounds | drafted {self.drafted_tokens}, "
            f"accepted {self.accepted_tokens} ({self.acceptance_rate:.0%}) | "
            f"{self.mean_accepted_per_round:.2f} accepted/round | target fw/token "
            f"{self.target_forwards_per_token:.3f}, draft fw/token {self.draft_forwards_per_token:.3f}"
        )
