"""Every example runs as written (with --tiny: tiny models, offline) and shows what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(name: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(EXAMPLES / name), "--tiny", "--max-new-tokens", "16", *args],
                         capture_output=True, text=True, timeout=600, cwd=EXAMPLES)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_demo_streams_and_compares():
    stdout = run("demo.py")
    assert "== target alone:" in stdout and "== SpecDec++:" in stdout  # both outputs are streamed
    assert "identical to the target's own greedy output: True" in stdout
    assert "tok/s" in stdout and "rounds" in stdout


def test_chat_keeps_the_conversation():
    stdout = run("chat.py", "--turns", "w7 w8", "w9 w10")
    assert stdout.count("assistant> ") == 2 and stdout.count("new tokens in") == 2


def test_sampling():
    stdout = run("sampling.py", "--samples", "2")
    assert "== sample 0:" in stdout and "== sample 1:" in stdout


def test_trees_match_the_target():
    stdout = run("trees.py", "--budgets", "4", "8")
    assert stdout.count("same as the target alone: True") == 3


def test_custom_generate_route():
    assert "new tokens in" in run("custom_generate.py")


def test_batch():
    stdout = run("batch.py")
    assert stdout.count("drafts accepted of") == 3 and "over 3 sequences" in stdout


def test_hub_method_loaded_by_transformers():
    stdout = run("hub_method.py")
    assert "custom_generate=" in stdout and "trust_remote_code=True" in stdout
    assert "same tokens as the target alone: True" in stdout and "rounds" in stdout


def test_find_head_on_the_hub(hub_server):
    """The example finds the tiny pair's head on the local Hub (HF_ENDPOINT from the fixture) and decodes."""
    from hf_specdecpp.testing import tiny_head

    head = tiny_head()
    head.training_info = {"draft_model_id": "hf-specdecpp-tiny/draft", "target_model_id": "hf-specdecpp-tiny/target"}
    head.push_to_hub("someone/tiny-pair-head")
    stdout = run("find_head.py")
    assert "found a head for hf-specdecpp-tiny/draft -> hf-specdecpp-tiny/target" in stdout and "rounds" in stdout
    assert ("GET", "/api/models") in hub_server.state.requests


@pytest.mark.parametrize("name", ["demo.py", "chat.py", "sampling.py", "trees.py", "custom_generate.py", "batch.py",
                                  "hub_method.py", "find_head.py"])
def test_examples_document_how_to_run_them(name):
    text = (EXAMPLES / name).read_text()
    assert f"python examples/{name}" in text and "--tiny" in text
