"""The scaling benchmark (`benchmarks/scaling.py`) on tiny models: it runs, writes its files, and its work counts
per round do not grow with the output or the prompt length (no wall-clock assertions)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling.py"


def load_script():
    spec = importlib.util.spec_from_file_location("scaling_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass resolves annotations through the module
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_the_table_and_flat_counts(tmp_path):
    scaling = load_script()
    points = scaling.main(["--tiny", "--out", str(tmp_path), "--output-lengths", "6,24", "--prompt-lengths", "6,24",
                           "--batch-sizes", "1,2", "--configs", "target,specdec++,tree"])
    assert {p.config for p in points} == {"target", "specdec++", "tree"}
    assert not [p for p in points if p.config == "tree" and p.batch > 1]  # one sequence per call
    table = (tmp_path / "scaling.md").read_text()
    assert "| specdec++ | 2 |" in table and "| tree | 1 |" in table
    assert json.loads((tmp_path / "scaling.json").read_text())["points"]
    assert (tmp_path / "scaling.png").stat().st_size > 0
    for point in points:
        if point.config == "target":
            continue
        # a constant per round at every length: one sync per drafted token (at most the cap) + two per round,
        # plus a few once per call; staged copies a constant per round, whatever the sequence length
        assert point.syncs_per_round is not None and point.syncs_per_round <= 16 + 3, point
        assert point.staged_per_round <= 12, point
