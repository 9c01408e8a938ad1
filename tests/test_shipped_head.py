"""The acceptance heads shipped in the package for the Qwen2.5-Coder 0.5B -> 1.5B pair."""

import json

import pytest
import torch

from hf_specdecpp import SpecDecPPCandidateGenerator
from hf_specdecpp.head import PRODUCING_STATE
from hf_specdecpp.heads import (
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
    assert head.temperature == TEMPERATURES[name]
    assert head.input_state == PRODUCING_STATE and head.use_confidence_features
    assert 0 < head.recommended_threshold < 1 and head.recommended_max_candidates >= 1
    assert next(head.parameters()).dtype == torch.float32
    calibration = head.training_info["calibration"]
    assert calibration["threshold"] == head.recommended_threshold
    assert calibration["max_candidates"] == head.recommended_max_candidates
    assert calibration["greedy"] == (TEMPERATURES[name] == 0.0)
    # HumanEval tasks 80-163 are reserved: the head's data came from ShareGPT prompts.
    assert head.training_info["data"]["source"]["path"].endswith("sharegpt_train.jsonl")
    generator = SpecDecPPCandidateGenerator(head=head)
    assert (generator.threshold, generator.max_candidates) == (head.recommended_threshold,
                                                               head.recommended_max_candidates)


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
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in path.iterdir()}
    config = json.loads((path / "config.json").read_text())
    card = (path / "README.md").read_text()
    assert config["draft_model_id"] in card and "AUROC" in card and "recommended threshold" in card
    assert "produced the drafted token" in card


def test_unknown_head_name():
    with pytest.raises(ValueError, match="No shipped acceptance head named 'nope'"):
        shipped_head_path("nope")
