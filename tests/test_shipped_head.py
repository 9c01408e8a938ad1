"""The acceptance heads shipped in the package for the Qwen2.5-Coder 0.5B -> 1.5B pair."""

import json
from pathlib import Path

import pytest
import torch

from hf_specdecpp import SpecDecPPCandidateGenerator
from hf_specdecpp.head import PRODUCING_STATE
from hf_specdecpp.head.shipped import (
    DEFAULT_HEAD,
    SAMPLING_HEAD,
    default_head_name,
    load_shipped_head,
    shipped_head_path,
    shipped_heads,
)

TEMPERATURES = {DEFAULT_HEAD: 0.0, SAMPLING_HEAD: 0.7}


def test_default_heads_are_shipped():
    assert set(shipped_heads()) == {DEFAULT_HEAD, SAMPLING_HEAD}
    assert default_head_name() == DEFAULT_HEAD and default_head_name(sampling=True) == SAMPLING_HEAD


@pytest.mark.parametrize("name", [DEFAULT_HEAD, SAMPLING_HEAD])
def test_shipped_head_is_calibrated(name):
    head = load_shipped_head(name)
    assert head.hidden_size == 896  # Qwen2.5-Coder-0.5B's hidden size
    assert head.draft_model_id == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert head.target_model_id == "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    assert head.decoding["temperature"] == TEMPERATURES[name]
    assert head.trained_for_sampling == (TEMPERATURES[name] > 0)
    assert head.input_state == PRODUCING_STATE and head.use_confidence_features
    policy = head.policy
    assert 0 < policy.threshold < 1 and policy.max_candidates >= 1 and policy.greedy == (TEMPERATURES[name] == 0)
    assert policy.measured_on.device_type == "cpu" and policy.measured_on.dtype in ("float32", "bfloat16")
    assert next(head.parameters()).dtype == torch.float32
    calibration = head.training_info["calibration"]
    assert calibration["threshold"] == policy.threshold
    assert calibration["max_candidates"] == policy.max_candidates
    assert calibration["greedy"] == (TEMPERATURES[name] == 0.0)
    # HumanEval tasks 80-163 are reserved: the head's data came from ShareGPT prompts.
    assert Path(head.training_info["data"]["source"]["path"]).name in ("sharegpt.jsonl", "sharegpt_train.jsonl")
    generator = SpecDecPPCandidateGenerator(head=head)
    assert generator.threshold is None  # resolved per call, from the policy for the call's device


@pytest.mark.parametrize("name", [DEFAULT_HEAD, SAMPLING_HEAD])
def test_shipped_head_follows_the_drafts_confidence(name):
    """More confident drafts get a higher predicted acceptance (what the dev data taught the head)."""
    head = load_shipped_head(name)
    torch.manual_seed(0)
    hidden = torch.randn(1, 896).expand(2, -1)  # the same state: only the confidence differs
    sharp = torch.full((151936,), -30.0)
    sharp[7] = 10.0
    flat = torch.zeros(151936)
    scores = torch.stack([sharp, flat])
    with torch.no_grad():
        p = head.predict_drafted(hidden, scores, torch.tensor([7, 7]))
    assert p.shape == (2,) and bool(((p > 0) & (p < 1)).all())
    assert float(p[0]) > float(p[1])


@pytest.mark.parametrize("name", [DEFAULT_HEAD, SAMPLING_HEAD])
def test_shipped_files_and_card(name):
    path = shipped_head_path(name)
    assert {"config.json", "model.safetensors", "README.md", "policy.json"} <= {p.name for p in path.iterdir()}
    info = json.loads((path / "training_info.json").read_text())
    card = (path / "README.md").read_text()
    assert info["draft_model_id"] in card and "AUROC" in card and "calibrated policy: threshold h =" in card
    assert "produced the drafted token" in card


@pytest.mark.parametrize("name", ["nope", "../head", "/etc", "qwen2.5-coder-0.5b-to-1.5b-greedy/../..", 7])
def test_only_shipped_names_are_accepted(name):
    with pytest.raises(ValueError, match="No shipped acceptance head named"):
        shipped_head_path(name)


@pytest.mark.parametrize("name", [DEFAULT_HEAD, SAMPLING_HEAD])
def test_shipped_heads_ship_traces_for_recalibration(name):
    """The README quickstart's `recalibrate="auto"` needs the dev traces: one per served dev response."""
    head = load_shipped_head(name)
    assert head.traces and head.traces["pred"].numel() > 1000
    assert head.policy.simulation["dev_responses"] >= 32
    SpecDecPPCandidateGenerator(head=head, recalibrate="auto")  # accepted (no ValueError)
