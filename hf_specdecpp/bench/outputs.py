"""Writing a timed run's files: tables (markdown, CSV), the checkpoint JSON and the plots."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .checkpoint import write_checkpoint
from .configs import ORACLE, TARGET_ALONE, names_of
from .plots import candidate_length_plot, speedup_plot, tradeoff_plot, tree_budget_plot
from .paired import paired_markdown
from .records import RESULT_COLUMNS, BenchmarkResult
from .summary import SUMMARY_COLUMNS, summary_markdown

ORACLE_COLUMNS = ["prompt_id", "new_tokens", "rounds", "accepted_tokens", "target_fw_per_token", "draft_step_s",
                  "target_step_s", "verify_s", "verify_tokens", "estimated_speedup"]


def write_csv(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """`rows` as CSV with `columns` (other keys ignored, missing ones empty)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def result_markdown(result: BenchmarkResult) -> str:
    """The run's tables in markdown: the summary, then the paired comparison when the run made one."""
    text = summary_markdown(result.summary, result.settings)
    if result.paired:
        text += "\n" + paired_markdown(result.paired, result.paired_with)
    return text


def write_outputs(result: BenchmarkResult, output_dir: str | Path, configs: dict | None = None) -> dict[str, Path]:
    """Write `summary.md`, `summary.csv`, `results.csv` (one row per call), `oracle.csv`, `results.json`,
    `paired.csv` (when a configuration to pair with is set) and the plots `speedup.png`, `candidate_lengths.png`,
    `tradeoff.png` (and `tree_budgets.png` with DySpec configurations); return their paths by name."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    configs = configs or {}
    paths = {name: out / name for name in ("summary.md", "summary.csv", "results.csv", "oracle.csv",
                                           "results.json", "speedup.png", "candidate_lengths.png", "tradeoff.png")}
    paths["summary.md"].write_text(result_markdown(result))
    write_csv(paths["summary.csv"], result.summary, SUMMARY_COLUMNS)
    write_csv(paths["results.csv"], [r.row() for r in result.records], RESULT_COLUMNS)
    if result.paired:
        paths["paired.csv"] = out / "paired.csv"
        write_csv(paths["paired.csv"], [dict(r, reference=result.paired_with) for r in result.paired],
                  ["reference", *result.paired[0]])
    oracle_rows = [{k: v for k, v in asdict(o).items() if k != "accepted_lengths"}
                   | dict(target_fw_per_token=o.target_fw_per_token) for o in result.oracle]
    write_csv(paths["oracle.csv"], oracle_rows, ORACLE_COLUMNS)
    write_checkpoint(result, paths["results.json"])
    _plots(result, configs, paths)
    trees = {n: configs[n] for n in names_of(configs, "dyspec")}
    if trees:
        paths["tree_budgets.png"] = out / "tree_budgets.png"
        references = {n for n, c in configs.items() if c == TARGET_ALONE} | {TARGET_ALONE, ORACLE}
        tree_budget_plot(result.summary, trees, references, paths["tree_budgets.png"])
    return paths


def _plots(result: BenchmarkResult, configs: dict, paths: dict) -> None:
    speedup_plot(result.summary, paths["speedup.png"])
    by_config: dict[str, list[int]] = {}
    for r in result.records:
        if r.candidate_lengths and not isinstance(configs.get(r.config, TARGET_ALONE), str):
            by_config.setdefault(r.config, []).extend(r.candidate_lengths)
    candidate_length_plot(by_config, paths["candidate_lengths.png"])
    tradeoff_plot(result.summary, names_of(configs, "specdec++"), paths["tradeoff.png"])
