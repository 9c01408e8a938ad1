"""The scaling benchmark (`benchmarks/scaling.py`) on tiny models: it runs, writes its files, and its work counts
per round do not grow with the output or the prompt length (no wall-clock assertions)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

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


def test_the_clock_reads_stretches_of_one_call_without_the_prefill():
    scaling = load_script()
    clock = scaling.LengthClock("cpu", prompt_tokens=10)
    clock.begin()
    clock.marks = [(3, 5.0), (4, 5.0), (8, 6.0), (12, 7.0), (20, 9.0)]  # (new tokens, seconds): prefill to 5.0 s
    # 3 -> 8 new tokens: 1 s over 5 tokens; 8 -> 20: 3 s over 12 tokens; whole decode: 4 s over 17 tokens
    assert clock.ms_per_token(0, 8) == (200.0, 5)
    assert clock.ms_per_token(8, 20) == (250.0, 12)
    assert clock.ms_per_token(0, 20) == (4000.0 / 17, 17)
    assert clock.ms_per_token(20, 40) is None  # nothing after the last mark
    args = scaling.parse(["--out", "unused", "--output-lengths", "8,20"])
    counts = {"prefill_seconds": 5.0, "decode_ms_per_token": 4000.0 / 17, "rounds": 4}
    points = scaling.points_of("output", "specdec++", 1, 10, 20, 9.0, counts, clock, args)
    assert [(p.new_tokens, p.ms_per_token, p.seconds) for p in points] == [(8, 200.0, 1.0), (20, 250.0, 3.0)]
    ids = torch.ones((1, 14), dtype=torch.long)
    assert not clock(ids, None).any() and clock.marks[-1][0] == 20  # never stops; a length already seen is not re-marked
