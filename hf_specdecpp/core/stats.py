"""Per-call statistics of speculative decoding: totals and one record per sequence of the batch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class RowStats:
    """Counts of one sequence (row) of a batch: rounds it took part in, its drafted/accepted tokens, its lengths."""

    rounds: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    new_tokens: int = 0
    candidate_lengths: list[int] = field(default_factory=list)
    accepted_lengths: list[int] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0

    def record_round(self, drafted: int, accepted: int) -> None:
        self.rounds += 1
        self.drafted_tokens += drafted
        self.accepted_tokens += accepted
        self.candidate_lengths.append(drafted)
        self.accepted_lengths.append(accepted)


@dataclass
class SpeculationStats:
    """Deterministic counts of one generate() call.

    - `rounds`: draft-then-verify rounds (one batched target forward pass each);
    - `drafted_tokens` / `accepted_tokens`: candidates proposed / accepted by the target, summed over rows;
    - `target_forwards` / `draft_forwards`: forward passes of each model (a pass covers every active row);
    - `candidate_lengths` / `accepted_lengths`: per round, candidates and accepted candidates (summed over rows);
    - `new_tokens`: tokens added to the sequences (accepted + one target token per row and round, after cuts);
    - `rows`: the same counts per sequence of the batch (`RowStats`); one row for batch size 1.

    Tree decoding (DySpec) also records `tree_sizes` (drafted nodes of every round) and `accepted_child_ranks`
    (for every round, the sibling rank of each accepted node: 0 for its parent's first child, ...).
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
    rows: list[RowStats] = field(default_factory=list)

    @classmethod
    def for_batch(cls, batch_size: int) -> "SpeculationStats":
        return cls(rows=[RowStats() for _ in range(batch_size)])

    def record_round(self, drafted: dict[int, int], accepted: dict[int, int]) -> None:
        """One round: `drafted[row]` candidates proposed and `accepted[row]` accepted for every active row."""
        self.rounds += 1
        self.target_forwards += 1
        total_drafted, total_accepted = sum(drafted.values()), sum(accepted.values())
        self.drafted_tokens += total_drafted
        self.accepted_tokens += total_accepted
        self.candidate_lengths.append(total_drafted)
        self.accepted_lengths.append(total_accepted)
        for row, count in drafted.items():
            self.rows[row].record_round(count, accepted[row])

    def set_new_tokens(self, per_row: list[int]) -> None:
        for row, count in enumerate(per_row):
            self.rows[row].new_tokens = count
        self.new_tokens = sum(per_row)

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted candidates."""
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0

    @property
    def mean_accepted_per_round(self) -> float:
        """Accepted candidates per row and round."""
        row_rounds = sum(r.rounds for r in self.rows) or self.rounds
        return self.accepted_tokens / row_rounds if row_rounds else 0.0

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
        rows = f" over {len(self.rows)} sequences" if len(self.rows) > 1 else ""
        return (
            f"{self.new_tokens} new tokens{rows} in {self.rounds} rounds | drafted {self.drafted_tokens}, "
            f"accepted {self.accepted_tokens} ({self.acceptance_rate:.0%}) | "
            f"{self.mean_accepted_per_round:.2f} accepted/round | target fw/token "
            f"{self.target_forwards_per_token:.3f}, draft fw/token {self.draft_forwards_per_token:.3f}"
        )
