"""Paired statistics of a timed run: every configuration against one reference, prompt by prompt."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from .records import Record
from .summary import fmt


def paired_ratios(records: Sequence[Record], reference: str) -> list[dict]:
    """Every other configuration against `reference`, prompt by prompt: the ratios time(config) / time(reference)
    on the same prompt (> 1: `reference` was faster), their geometric mean with a 95% Student-t interval (over
    the log ratios), their range, and on how many prompts `reference` was faster.

    The geometric mean equals the ratio of the two configurations' speedups over the same prompts; the interval
    and the win count say whether a difference is larger than the prompt-to-prompt (and run-to-run) noise.
    """
    times: dict[str, dict[str, float]] = {}
    for r in records:
        times.setdefault(r.config, {})[r.prompt_id] = r.time_s
    if reference not in times:
        raise ValueError(f"no records of {reference!r} to compare with")
    base = times[reference]
    rows = []
    for name, by_prompt in times.items():
        if name == reference:
            continue
        logs = [math.log(t / base[p]) for p, t in by_prompt.items() if p in base and t > 0 and base[p] > 0]
        if logs:
            rows.append(dict(config=name, **log_ratio_interval(logs)))
    return rows


def log_ratio_interval(logs: Sequence[float]) -> dict:
    """Geometric mean ratio of log ratios `logs` with its 95% Student-t interval, range, wins (> 0) and count."""
    from scipy import stats

    n, mean = len(logs), sum(logs) / len(logs)
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(logs) / math.sqrt(n) if n > 1 else float("nan")
    return dict(ratio=math.exp(mean), ci_low=math.exp(mean - half), ci_high=math.exp(mean + half),
                min=math.exp(min(logs)), max=math.exp(max(logs)), wins=sum(x > 0 for x in logs), prompts=n)


def paired_markdown(rows: Sequence[dict], reference: str) -> str:
    lines = [f"Paired with `{reference}`: time of the config / time of `{reference}` on the same prompt "
             f"(geometric mean; > 1: `{reference}` faster).", "",
             f"| config | ratio | 95% CI | range | {reference} faster on |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['ratio']:.3f} | {fmt(r['ci_low'])}-{fmt(r['ci_high'])} | "
                     f"{r['min']:.2f}-{r['max']:.2f} | {r['wins']}/{r['prompts']} |")
    return "\n".join(lines) + "\n"
