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


def test_the_readme_first_command_runs_on_tiny_models_from_the_environment():
    """Issue 25.1: CI runs `python examples/demo.py` as the README writes it, with HF_SPECDECPP_DEMO_TINY=1: the
    same loading, head, streaming and comparison on tiny models, no download."""
    import os

    env = dict(os.environ, HF_SPECDECPP_DEMO_TINY="1", HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, str(EXAMPLES / "demo.py"), "--max-new-tokens", "16"], capture_output=True,
                         text=True, timeout=600, cwd=EXAMPLES.parent, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "== target alone:" in out.stdout and "== SpecDec++:" in out.stdout
    assert "identical to the target's own greedy output: True" in out.stdout
    env["HF_SPECDECPP_DEMO_TINY"] = "maybe"
    out = subprocess.run([sys.executable, str(EXAMPLES / "demo.py")], capture_output=True, text=True, timeout=600,
                         cwd=EXAMPLES.parent, env=env)
    assert out.returncode != 0 and "HF_SPECDECPP_DEMO_TINY='maybe'" in out.stderr


def test_a_different_output_says_where_and_whether_it_is_a_near_tie(monkeypatch):
    """Issue 25.3: in bf16 the examples print where the output first leaves the target's own and whether the
    target's logits hold a near-tie there, instead of a bare False."""
    import torch

    monkeypatch.syspath_prepend(str(EXAMPLES))
    from common import Setup, compare_with_target

    from hf_specdecpp.testing import tiny_pair, tiny_tokenizer

    target, draft = tiny_pair("llama")
    setup = Setup(target, draft, tiny_tokenizer(), None, True)
    prompt = torch.tensor([[2, 5, 6, 7]])
    reference = target.generate(prompt, max_new_tokens=6, do_sample=False)
    assert compare_with_target(setup, reference, reference.clone(), 4) == "True"
    with torch.no_grad():
        logits = target(reference[:, :6]).logits[0, -1]
    chosen = int(reference[0, 6])
    runner_up = int(logits.topk(2).indices[1])
    near = reference.clone()
    near[0, 6] = runner_up
    with torch.no_grad():  # make the target's two best tokens at new token 3 a tie
        bias = torch.zeros(target.config.vocab_size)
        bias[runner_up] = float(logits[chosen] - logits[runner_up])
        target.lm_head.bias = torch.nn.Parameter(bias)
        message = compare_with_target(setup, reference, near, 4, "the tree")
        assert message.startswith("False: first difference at new token 3") and "the tree" in message
        assert "within float32 rounding" in message and "near-tie" in message and "--dtype float32" in message
        far = reference.clone()
        far[0, 6] = int(logits.argmin())
        assert "not a near-tie" in compare_with_target(setup, reference, far, 4)
