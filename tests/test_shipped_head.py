"""The acceptance head shipped in the package for the Qwen2.5-Coder 0.5B -> 1.5B pair."""

import json

import pytest
import torch

from hf_specdecpp import SpecDecPPCandidateGenerator
from hf_specdecpp.heads import DEFAULT_HEAD, load_shipped_head, shipped_head_path, shipped_heads


def test_default_head_is_shipped_and_calibrated():
    assert DEFAULT_HEAD in shipped_heads()
    head = load_shipped_head()
    assert head.hidden_size == 896  # Qwen2.5-Coder-0.5B's hidden size
    assert head.draft_model_id == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert head.target_model_id == "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    assert head.temperature == 0.0
    assert 0 < head.recommended_threshold < 1 and head.recommended_max_candidates >= 1
    assert next(head.parameters()).dtype == torch.float32
    calibration = head.training_info["calibration"]
    assert calibration["threshold"] == head.recommended_threshold
    assert calibration["max_candidates"] == head.recommended_max_candidates
    # HumanEval tasks 80-163 are reserved: the head's data came from ShareGPT prompts.
    assert head.training_info["data"]["source"]["path"] == "sharegpt_train.jsonl"
    generator = SpecDecPPCandidateGenerator(head=head)
    assert (generator.threshold, generator.max_candidates) == (head.recommended_threshold,
                                                               head.recommended_max_candidates)


def test_shipped_head_predicts_probabilities():
    head = load_shipped_head()
    torch.manual_seed(0)
    with torch.no_grad():
        p = head(torch.randn(64, 896))
    assert p.shape == (64,) and bool(((p > 0) & (p < 1)).all()) and float(p.std()) > 0


def test_shipped_files_and_card():
    path = shipped_head_path()
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in path.iterdir()}
    config = json.loads((path / "config.json").read_text())
    card = (path / "README.md").read_text()
    assert config["draft_model_id"] in card and "AUROC" in card and "recommended threshold" in card


def test_unknown_head_name():
    with pytest.raises(ValueError, match="No shipped acceptance head named 'nope'"):
        shipped_head_path("nope")
