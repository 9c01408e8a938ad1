"""The summary table of a timed run: one row per configuration (and the oracle), as a list and as markdown."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .configs import ORACLE
from .machine import machine_line
from .records import OracleRecord, Record

SUMMARY_COLUMNS = [
    "config", "speedup", "tokens_per_s", "target_fw_per_token", "draft_fw_per_token",
    "mean_accepted_per_round", "mean_candidate_length", "discard_rate", "all_equal", "prompts",
]


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean of the positive values (NaN when there is none)."""
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def mean(values) -> float | None:
    """Arithmetic mean of the values that are not None (None when there is none)."""
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _config_row(name: str, recs: Sequence[Record]) -> dict:
    drafted = sum(r.drafted_tokens or 0 for r in recs)
    accepted = sum(r.accepted_tokens or 0 for r in recs)
    lengths = [n for r in recs for n in r.candidate_lengths]
    equal = [r.equal_to_target for r in recs]
    return dict(
        config=name,
        speedup=geometric_mean([r.speedup for r in recs]),
        tokens_per_s=sum(r.new_tokens for r in recs) / sum(r.time_s for r in recs),
        target_fw_per_token=mean([r.target_fw_per_token for r in recs]),
        draft_fw_per_token=mean([r.draft_fw_per_token for r in recs]),
        mean_accepted_per_round=mean([r.mean_accepted_per_round for r in recs]),
        mean_candidate_length=mean(lengths) if lengths else None,
        discard_rate=(drafted - accepted) / drafted if drafted else None,
        all_equal=None if any(e is None for e in equal) else all(equal),
        prompts=len(recs),
    )


def _oracle_row(oracles: Sequence[OracleRecord]) -> dict:
    return dict(
        config=ORACLE,
        speedup=geometric_mean([o.estimated_speedup for o in oracles]),
        tokens_per_s=None,
        target_fw_per_token=mean([o.target_fw_per_token for o in oracles]),
        draft_fw_per_token=mean([o.draft_fw_per_token for o in oracles]),
        mean_accepted_per_round=mean([o.accepted_tokens / o.rounds for o in oracles]),
        mean_candidate_length=mean([n for o in oracles for n in o.accepted_lengths]),
        discard_rate=0.0,
        all_equal=None,
        prompts=len(oracles),
    )


def summarize(records: Sequence[Record], oracles: Sequence[OracleRecord], names: Sequence[str]) -> list[dict]:
    """One row per configuration (in `names` order) plus the oracle row when there is one."""
    rows = []
    for name in names:
        recs = [r for r in records if r.config == name]
        if recs:
            rows.append(_config_row(name, recs))
    if oracles:
        rows.append(_oracle_row(oracles))
    return rows


def fmt(value, digits: int = 3) -> str:
    """A table cell: '-' for missing values, yes/NO for booleans, `digits` decimals for floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_markdown(summary: Sequence[dict], settings: dict | None = None) -> str:
    """The summary as a markdown table, with a line on how it was measured."""
    header = ["config", "speedup", "tok/s", "target fw/token", "draft fw/token", "accepted/round",
              "mean cand. len", "discard rate", "= target", "prompts"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in summary:
        speed = f"{row['speedup']:.2f}x" if row["speedup"] == row["speedup"] else "-"
        if row["config"] == ORACLE:
            speed += " (est.)"
        cells = [row["config"], speed, fmt(row["tokens_per_s"], 1), fmt(row["target_fw_per_token"]),
                 fmt(row["draft_fw_per_token"]), fmt(row["mean_accepted_per_round"], 2),
                 fmt(row["mean_candidate_length"], 2), fmt(row["discard_rate"]), fmt(row["all_equal"]),
                 fmt(row["prompts"])]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if settings:
        text += "\n" + _settings_line(settings)
    return text


def _settings_line(settings: dict) -> str:
    mode = f"sampling T={settings['temperature']}" if settings["sampling"] else "greedy"
    runs = settings.get("runs", 1)
    sittings = f" (collected in {runs} sittings with --resume)" if runs > 1 else ""
    machine = f" Machine: {machine_line(settings['machine'])}." if settings.get("machine") else ""
    return (f"{settings['prompts']} prompts, {mode}, max_new_tokens={settings['max_new_tokens']}, "
            f"{settings['order']}{sittings}.{machine} Speedup: geometric mean over prompts of target-alone time / "
            "config time; oracle: rounds stop exactly at the first draft/target mismatch, speedup estimated from "
            "measured step times.\n")
