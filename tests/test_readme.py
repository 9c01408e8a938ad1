"""The README's quickstart runs as written: the code block is executed with tiny stand-ins for the real pair and
the shipped head (the only names it gets from outside are `load_pair` and `load_shipped_head`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import hf_specdecpp
import hf_specdecpp.assets
from hf_specdecpp.methods.specdecpp import calibration
from hf_specdecpp.methods.specdecpp.calibration import pack_traces
from hf_specdecpp.testing import tiny_head, tiny_pair, tiny_tokenizer

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_code() -> str:
    text = README.read_text()
    section = text.split("## Quickstart", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    return next(block for block in blocks if "import" in block)  # the Python API (the Hub one-liner comes first)


def test_readme_opens_with_the_two_commands():
    first = re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1)
    commands = [line for line in first.splitlines() if line and not line.startswith("#")]
    assert commands == ['pip install -e ".[fetch]" && python examples/demo.py',
                        'pip install -e ".[test]" && python -m pytest tests -q']


def test_quickstart_runs_with_tiny_stand_ins(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_SPECDECPP_CACHE", str(tmp_path))
    calibration._MEMORY.clear()
    target, draft = tiny_pair("llama", noise=0.05, seed=1)
    head = tiny_head()
    rng = np.random.default_rng(0)
    preds = [rng.uniform(0.5, 1.0, 40) for _ in range(6)]
    head.traces = pack_traces(preds, [(rng.random(40) < p).astype(float) for p in preds], greedy=True)

    def load_pair(dtype=torch.bfloat16, **kwargs):
        assert dtype == torch.bfloat16  # what the quickstart asks for; the tiny models stay in float32
        return target, draft, tiny_tokenizer()

    monkeypatch.setattr(hf_specdecpp.assets, "load_pair", load_pair)
    monkeypatch.setattr(hf_specdecpp, "load_shipped_head", lambda *a, **k: head)
    namespace: dict = {}
    exec(compile(quickstart_code(), "README.md quickstart", "exec"), namespace)
    out = namespace["out"]
    assert out.speculation_stats.new_tokens == out.sequences.shape[1] - namespace["inputs"]["input_ids"].shape[1]
    reference = target.generate(**namespace["inputs"], max_new_tokens=128, do_sample=False)
    assert torch.equal(out.sequences, reference)
    printed = capsys.readouterr().out
    assert "rounds" in printed and "accepted" in printed
    calibration._MEMORY.clear()
