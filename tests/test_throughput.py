"""Batch throughput measurement (`hf_specdecpp.bench.throughput`, benchmarks/batch_throughput.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from hf_specdecpp import FixedLengthCandidateGenerator
from hf_specdecpp.bench.throughput import batch_throughput, count_new_tokens, throughput_table
from hf_specdecpp.testing import tiny_pair, tiny_prompts, tiny_tokenizer


def test_new_tokens_stop_at_each_rows_eos():
    sequences = torch.tensor([[9, 9, 5, 6, 2, 0, 0], [9, 9, 5, 6, 7, 8, 4]])
    assert count_new_tokens(sequences, 2, {2}) == 3 + 5


def test_every_batch_size_and_config_is_run_each_repeat_in_rotating_order():
    target, draft = tiny_pair(noise=0.05)
    order = []
    runs = batch_throughput(target, draft, tiny_tokenizer(), [p["prompt"] for p in tiny_prompts(4)],
                            {"k2": FixedLengthCandidateGenerator(num_candidates=2)}, [1, 4], repeats=2,
                            max_new_tokens=6, progress=lambda r: order.append((r.repeat, r.batch_size, r.config)))
    assert order == [(0, 1, "target"), (0, 1, "k2"), (0, 4, "target"), (0, 4, "k2"),
                     (1, 1, "k2"), (1, 1, "target"), (1, 4, "k2"), (1, 4, "target")]
    assert all(r.new_tokens == 6 * r.batch_size for r in runs)  # no EOS in the tiny vocabulary's draws here
    assert all(r.target_forwards == 6 for r in runs if r.config == "target")
    rows = throughput_table(runs)
    assert [(r["batch_size"], r["config"]) for r in rows] == [(1, "target"), (1, "k2"), (4, "target"), (4, "k2")]
    assert all(r["speedup"] == 1.0 for r in rows if r["config"] == "target")


def test_script_smoke(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "batch_throughput.py"
    out = subprocess.run([sys.executable, str(script), "--tiny", "--out", str(tmp_path), "--repeats", "1",
                          "--batch-sizes", "1,2", "--max-new-tokens", "4"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = (tmp_path / "throughput.md").read_text()
    assert "| 2 | specdec++ |" in text and "CPU" in text
