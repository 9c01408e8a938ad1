"""Checkpoint and resume: a run's results saved after every prompt, continued only with the same settings."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..utils.io import diff_settings, read_json, write_json
from .records import BenchmarkResult, OracleRecord, Record

UNCHECKED_SETTINGS = ("prompts", "runs", "machine", "reference", "head_overhead")
"""Settings that may differ between sittings of one run: what is done so far, what is measured again in each
sitting (the machine's description, the head's overhead), and which configuration gave the greedy output (the
same tokens in float32)."""


class ResumeError(ValueError):
    """A benchmark cannot be resumed: no output folder, or the saved run used other settings."""


def check_same_settings(saved: dict, settings: dict, folder: Path) -> None:
    """Raise `ResumeError` naming every difference between a saved run's settings and these."""
    old = {k: v for k, v in saved.items() if k not in UNCHECKED_SETTINGS}
    new = {k: v for k, v in json.loads(json.dumps(settings)).items() if k not in UNCHECKED_SETTINGS}
    diffs = diff_settings(old, new)
    if diffs:
        raise ResumeError(f"cannot resume the benchmark in {folder}: it was run with other settings:\n  "
                          + "\n  ".join(diffs) + "\nUse another output folder, or the same options as that run.")


def write_checkpoint(result: BenchmarkResult, path: Path) -> None:
    """`results.json`: settings, summary, run order, every record (with its tokens) and the oracle records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, dict(settings=result.settings, summary=result.summary, run_order=result.run_order,
                          records=[asdict(r) for r in result.records], oracle=[asdict(o) for o in result.oracle]))


def load_checkpoint(path: Path, settings: dict) -> BenchmarkResult | None:
    """The run saved in `path` (None if there is none), after checking that it was made with `settings`."""
    if not path.exists():
        return None
    saved = read_json(path)
    check_same_settings(saved["settings"], settings, path.parent)
    return BenchmarkResult([Record(**r) for r in saved["records"]], [OracleRecord(**o) for o in saved["oracle"]],
                           saved["summary"], [tuple(x) for x in saved["run_order"]], saved["settings"])
