"""What a timed benchmark run keeps: one `Record` per generate() call, one `OracleRecord` per greedy prompt, and
the `BenchmarkResult` that gathers them with the summary table and the paired comparison."""

from __future__ import annotations

from dataclasses import dataclass, field

RESULT_COLUMNS = [
    "prompt_id", "config", "order", "time_s", "new_tokens", "tokens_per_s", "target_forwards", "draft_forwards",
    "target_fw_per_token", "draft_fw_per_token", "rounds", "drafted_tokens", "accepted_tokens",
    "mean_accepted_per_round", "candidate_lengths", "equal_to_target", "speedup",
]


@dataclass
class Record:
    """One generate() call: `config` on `prompt_id`, `order` = its position within that prompt's rotation."""

    prompt_id: str
    config: str
    order: int
    time_s: float
    new_tokens: int
    target_forwards: int
    draft_forwards: int
    rounds: int | None = None
    drafted_tokens: int | None = None
    accepted_tokens: int | None = None
    candidate_lengths: list[int] = field(default_factory=list)
    equal_to_target: bool | None = None
    speedup: float | None = None  # target-alone time / this time, same prompt
    tokens: list[int] = field(default_factory=list, repr=False)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.time_s if self.time_s > 0 else 0.0

    @property
    def target_fw_per_token(self) -> float:
        return self.target_forwards / self.new_tokens if self.new_tokens else 0.0

    @property
    def draft_fw_per_token(self) -> float:
        return self.draft_forwards / self.new_tokens if self.new_tokens else 0.0

    @property
    def mean_accepted_per_round(self) -> float | None:
        if self.rounds and self.accepted_tokens is not None:
            return self.accepted_tokens / self.rounds
        return None

    def row(self) -> dict:
        out = {k: getattr(self, k) for k in RESULT_COLUMNS}
        out["candidate_lengths"] = " ".join(map(str, self.candidate_lengths))
        return out


@dataclass
class OracleRecord:
    """The greedy oracle on one prompt: rounds that stop exactly at the first draft/target mismatch."""

    prompt_id: str
    new_tokens: int
    rounds: int
    accepted_tokens: int
    accepted_lengths: list[int]
    draft_step_s: float
    target_step_s: float
    verify_s: float
    verify_tokens: int
    estimated_speedup: float

    @property
    def target_fw_per_token(self) -> float:
        return self.rounds / self.new_tokens if self.new_tokens else 0.0

    @property
    def draft_fw_per_token(self) -> float:
        return self.accepted_tokens / self.new_tokens if self.new_tokens else 0.0


@dataclass
class BenchmarkResult:
    records: list[Record]
    oracle: list[OracleRecord]
    summary: list[dict]
    run_order: list[tuple[str, str]]  # (prompt_id, config) in execution order, warm-up excluded
    settings: dict
    paired_with: str | None = None  # the configuration `paired` compares every other one with
    paired: list[dict] = field(default_factory=list)
