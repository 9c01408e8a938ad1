"""Validating the cost model: the timed interleaved benchmark on a subset of the prompts, against the wall-clock
times the exact counts predict (`costs.predicted_seconds`, with each prompt's prefill measured here).

Timings are only meaningful on a quiet machine (nothing else running; check `uptime` first)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ...core.costs import CostCurve
from ..configs import TARGET_ALONE
from ..outputs import write_csv
from ..runner import prompt_items, run_benchmark
from ..summary import fmt, geometric_mean, mean
from .costs import measure_prefill, predicted_seconds
from .records import ExactRecord

VALIDATION_COLUMNS = ["config", "predicted_s", "measured_s", "measured_over_predicted", "predicted_speedup",
                      "measured_speedup", "counts_equal", "prompts"]


def _predictions(records: Sequence[ExactRecord], costs: CostCurve, prefill: dict) -> dict[tuple[str, str], float]:
    """Predicted seconds per (prompt, config): the mean over a prompt's calls (seeds)."""
    out: dict[tuple[str, str], list[float]] = {}
    for r in records:
        if r.prompt_id in prefill:
            out.setdefault((r.prompt_id, r.config), []).append(predicted_seconds(r, costs, *prefill[r.prompt_id]))
    return {k: sum(v) / len(v) for k, v in out.items()}


def _counts_equal(records: Sequence[ExactRecord], timed, name: str) -> bool | None:
    """Whether the timed calls made the forward passes the exact records say (greedy replays only)."""
    exact = {r.prompt_id: r for r in records if r.config == name and r.seed is None}
    pairs = [(exact[t.prompt_id], t) for t in timed if t.config == name and t.prompt_id in exact]
    if not pairs:
        return None
    return all(e.target_forwards == t.target_forwards and e.draft_forwards == t.draft_forwards for e, t in pairs)


def validation_rows(records: Sequence[ExactRecord], timed_records, names: Sequence[str], costs: CostCurve,
                    prefill: dict, target_name: str) -> list[dict]:
    """Per configuration: mean predicted and measured seconds and both speedups (geometric means over prompts)."""
    predicted = _predictions(records, costs, prefill)
    rows = []
    for name in names:
        timed = [t for t in timed_records if t.config == name and (t.prompt_id, name) in predicted]
        if not timed:
            continue
        pred = [predicted[(t.prompt_id, name)] for t in timed]
        pred_speed = [predicted[(t.prompt_id, target_name)] / predicted[(t.prompt_id, name)] for t in timed
                      if (t.prompt_id, target_name) in predicted]
        rows.append(dict(config=name, predicted_s=mean(pred), measured_s=mean([t.time_s for t in timed]),
                         measured_over_predicted=geometric_mean([t.time_s / p for t, p in zip(timed, pred)]),
                         predicted_speedup=geometric_mean(pred_speed),
                         measured_speedup=geometric_mean([t.speedup for t in timed]),
                         counts_equal=_counts_equal(records, timed, name), prompts=len(timed)))
    return rows


def validation_markdown(rows: Sequence[dict]) -> str:
    lines = ["| config | predicted s | measured s | measured / predicted | predicted speedup | measured speedup | "
             "same counts | prompts |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {fmt(r['predicted_s'])} | {fmt(r['measured_s'])} | "
                     f"{fmt(r['measured_over_predicted'])} | {fmt(r['predicted_speedup'])}x | "
                     f"{fmt(r['measured_speedup'])}x | {fmt(r['counts_equal'])} | {r['prompts']} |")
    return "\n".join(lines) + "\n"


def validate(target, draft, tokenizer, prompts: Sequence, configs: dict, records: Sequence[ExactRecord],
             costs: CostCurve, output_dir: Path, *, sampling: bool, temperature: float, max_new_tokens: int,
             progress=None, machine: dict | None = None) -> list[dict]:
    """Time `prompts` interleaved (`run_benchmark`, written to `output_dir`) and compare with the predictions;
    writes `validation.md` and `validation.csv` there."""
    prefill = {}
    for prompt_id, text in prompt_items(prompts):
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        prefill[prompt_id] = (measure_prefill(target, ids), measure_prefill(draft, ids))
    timed = run_benchmark(target, draft, tokenizer, prompts, configs, sampling=sampling, temperature=temperature,
                          max_new_tokens=max_new_tokens, output_dir=output_dir, oracle=False, progress=progress,
                          machine=machine)
    target_name = next(n for n, c in configs.items() if c == TARGET_ALONE)
    rows = validation_rows(records, timed.records, list(configs), costs, prefill, target_name)
    text = ("Validation: predicted wall-clock time (exact counts x cost curve + measured prefill) against the "
            f"timed interleaved run on {len(prefill)} prompts.\n\n" + validation_markdown(rows))
    (output_dir / "validation.md").write_text(text)
    write_csv(output_dir / "validation.csv", rows, VALIDATION_COLUMNS)
    return rows
