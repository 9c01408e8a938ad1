"""The exact mode's tables: one row per configuration (speedups from exact counts and the cost curve), as rows,
markdown and CSV-ready dicts, with the machine, dtype and device they come from."""

from __future__ import annotations

from collections.abc import Sequence

from ...core.costs import CostCurve
from ..configs import ORACLE
from ..machine import machine_line
from ..summary import fmt, geometric_mean, mean
from .records import ExactRecord

EXACT_COLUMNS = ["config", "speedup", "of_oracle", "target_fw_per_token", "draft_fw_per_token",
                 "mean_accepted_per_round", "mean_candidate_length", "discard_rate", "all_equal", "prompts", "calls"]


def prompt_speedups(records: Sequence[ExactRecord]) -> dict[str, float]:
    """Per prompt: 1 / (mean over its calls, e.g. seeds, of cost per generated token)."""
    per_token: dict[str, list[float]] = {}
    for r in records:
        if r.units and r.new_tokens:
            per_token.setdefault(r.prompt_id, []).append(r.units / r.new_tokens)
    return {p: 1.0 / (sum(v) / len(v)) for p, v in per_token.items()}


def _row(name: str, recs: Sequence[ExactRecord]) -> dict:
    drafted = sum(r.drafted_tokens for r in recs)
    accepted = sum(r.accepted_tokens for r in recs)
    rounds = sum(r.rounds for r in recs)
    lengths = [k for r in recs for k in r.candidate_lengths]
    equal = [r.equal_to_target for r in recs if r.equal_to_target is not None]
    return dict(config=name, speedup=geometric_mean(list(prompt_speedups(recs).values())), of_oracle=None,
                target_fw_per_token=mean([r.target_forwards / r.new_tokens for r in recs if r.new_tokens]),
                draft_fw_per_token=mean([r.draft_forwards / r.new_tokens for r in recs if r.new_tokens]),
                mean_accepted_per_round=accepted / rounds if rounds else None,
                mean_candidate_length=mean(lengths) if lengths else None,
                discard_rate=(drafted - accepted) / drafted if drafted else None,
                all_equal=all(equal) if equal else None, prompts=len({r.prompt_id for r in recs}), calls=len(recs))


def exact_summary(records: Sequence[ExactRecord], names: Sequence[str]) -> list[dict]:
    """One row per configuration in `names` order, then the oracle; `of_oracle` = speedup / oracle speedup."""
    rows = []
    for name in [*names, ORACLE]:
        recs = [r for r in records if r.config == name]
        if recs:
            rows.append(_row(name, recs))
    oracle = next((r["speedup"] for r in rows if r["config"] == ORACLE), None)
    for row in rows:
        if oracle and row["speedup"] == row["speedup"]:
            row["of_oracle"] = row["speedup"] / oracle
    return rows


def costs_line(costs: CostCurve) -> str:
    """The cost curve in one line: step times, c and v(K) at the measured K."""
    v = ", ".join(f"v({k})={x:.2f}" for k, x in costs.verify_cost.items())
    return (f"Cost curve: target step {1e3 * costs.target_step_s:.1f} ms, draft step {1e3 * costs.draft_step_s:.1f} "
            f"ms, c={costs.c_draft:.3f}; {v} (measured interleaved, median of {costs.repeats} repeats, "
            f"{costs.prompt_length} cached tokens)")


def exact_markdown(rows: Sequence[dict], settings: dict, costs: CostCurve) -> str:
    """The table with the settings, machine and cost curve it was computed with."""
    header = ["config", "speedup", "% of oracle", "target fw/token", "draft fw/token", "accepted/round",
              "mean cand. len", "discard rate", "= target", "prompts", "calls"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        of = f"{100 * r['of_oracle']:.0f}%" if r["of_oracle"] is not None else "-"
        speed = f"{r['speedup']:.3f}x" if r["speedup"] == r["speedup"] else "-"
        cells = [r["config"], speed, of, fmt(r["target_fw_per_token"]), fmt(r["draft_fw_per_token"]),
                 fmt(r["mean_accepted_per_round"], 2), fmt(r["mean_candidate_length"], 2), fmt(r["discard_rate"]),
                 fmt(r["all_equal"]), fmt(r["prompts"]), fmt(r["calls"])]
        lines.append("| " + " | ".join(cells) + " |")
    mode = (f"sampling T={settings['temperature']}, {len(settings['seeds'])} seeds per prompt (counted real calls)"
            if settings["sampling"] else "greedy (exact counts by replay; draft trees counted from real calls)")
    return "\n".join(lines) + (
        f"\n\n{rows[0]['prompts'] if rows else 0} prompts, {mode}, max_new_tokens={settings['max_new_tokens']}. "
        "Speedup: geometric mean over prompts of target-alone cost / config cost, in target decode steps "
        "(a round with K candidates costs K*c + v(K); prefill left out). Oracle: every round drafts exactly the "
        f"tokens the target accepts.{_overhead_line(settings)}\n\nMachine: {machine_line(settings['machine'])}.\n\n"
        f"{costs_line(costs)}.\n")


def _overhead_line(settings: dict) -> str:
    overhead = settings.get("head_overhead") or 0.0
    return (f" Configurations with an acceptance head pay its measured overhead, {100 * overhead:.1f}% of a draft "
            "step per drafted token." if overhead else "")
