"""Issue 25 (items 9, 10) and issue 23 (item 7) at the edges: files others can read, model cards naming Hub ids,
and CLI messages that keep their text, name the missing folder and come before any heavy import."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hf_specdecpp.cli import app
from hf_specdecpp.head import AcceptanceHead
from hf_specdecpp.training.common import hub_repo_id, same_model_id
from hf_specdecpp.training.head_files import trained_head_info

ROOT = Path(__file__).resolve().parents[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_saved_weights_and_traces_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        head = AcceptanceHead(hidden_size=8, num_layers=1)
        head.traces = {"probabilities": torch.rand(4)}
        head.save_pretrained(tmp_path)
    finally:
        os.umask(old)
    for name in ("model.safetensors", "traces.safetensors", "config.json"):
        assert _mode(tmp_path / name) == 0o644, name


def _fingerprint(model_id: str) -> dict:
    return {"id": model_id, "commit": None, "config_sha": "0", "weights_sha": "0"}


def test_card_names_the_hub_repo_of_a_cached_snapshot_or_a_fetched_model(tmp_path):
    snapshot = tmp_path / "hub" / "models--org--tiny-draft" / "snapshots" / "0123abcd"
    fetched = tmp_path / "fetch" / "qwen2.5-coder-1.5b-instruct"
    for folder in (snapshot, fetched):
        folder.mkdir(parents=True)
    (fetched / ".hf_specdecpp_complete.json").write_text(json.dumps({"source": "pypi",
                                                                      "short_name": fetched.name}))
    assert hub_repo_id(str(snapshot)) == "org/tiny-draft"
    assert hub_repo_id(str(fetched)) == "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    assert hub_repo_id("org/name") is None and hub_repo_id(str(tmp_path)) is None
    assert same_model_id("org/tiny-draft", str(snapshot))  # calibrate still accepts the data made from the copy
    meta = {"draft": _fingerprint(str(snapshot)), "target": _fingerprint(str(fetched)), "source": {},
            "responses": "target", "mix_ratio": 0.15, "max_new_tokens": 8, "decoding": {"do_sample": False}}
    head = AcceptanceHead(hidden_size=8, num_layers=1)
    head.training_info = trained_head_info(head, meta, {"totals": {}}, tmp_path, {}, {"best": None, "history": []})
    assert (head.draft_model_id, head.target_model_id) == ("org/tiny-draft", "Qwen/Qwen2.5-Coder-1.5B-Instruct")
    card = str(head.generate_model_card())
    assert "org/tiny-draft" in card and str(snapshot) not in card and str(fetched) not in card
