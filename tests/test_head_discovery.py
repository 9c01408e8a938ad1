"""Heads that find themselves: model cards name the pair (`base_model`), `AcceptanceHead.for_pair` finds a head
through the real huggingface_hub client against the local Hub, and a head for another pair is refused."""

from __future__ import annotations

import pytest
import torch
import transformers.dynamic_module_utils as dynamic_module_utils

from hf_specdecpp.head import AcceptanceHead
from hf_specdecpp.head.discovery import HeadNotFoundError, WrongPairError, base_models, find_heads
from hf_specdecpp.integration.hub_method import push_method
from hf_specdecpp.testing import tiny_pair

from helpers import random_head
from hub_server import card_metadata

DRAFT, TARGET, OTHER = "org/draft-0.5b", "org/target-1.5b", "org/target-7b"


def head_for(draft: str, target: str, seed: int = 0) -> AcceptanceHead:
    head = random_head(32, seed=seed)
    head.training_info = {**(head.training_info or {}), "draft_model_id": draft, "target_model_id": target}
    return head


def test_the_card_names_the_pair_as_base_model(hub_server):
    head_for(DRAFT, TARGET).push_to_hub("org/head")
    card = card_metadata(hub_server.state.repos["org/head"].files("main")["README.md"])
    assert base_models(card) == [DRAFT, TARGET] and "acceptance-head" in card["tags"]


def test_local_paths_are_not_written_as_base_model(tmp_path):
    head = head_for(str(tmp_path / "draft"), TARGET)
    assert "base_model" not in str(head.generate_model_card()).split("---")[1]


def test_for_pair_finds_the_head_of_the_pair(hub_server):
    head_for(DRAFT, OTHER, seed=1).push_to_hub("org/head-for-7b")
    head_for(DRAFT, TARGET, seed=2).push_to_hub("org/head-for-1.5b")
    assert find_heads(DRAFT, TARGET) == ["org/head-for-1.5b"]
    found = AcceptanceHead.for_pair(DRAFT, TARGET)
    expected = head_for(DRAFT, TARGET, seed=2)
    for key, tensor in expected.state_dict().items():
        assert torch.equal(found.state_dict()[key], tensor), key
    assert ("GET", "/api/models") in hub_server.state.requests  # searched through the Hub's listing


def test_for_pair_skips_a_card_edited_to_name_another_pair(hub_server):
    from huggingface_hub import HfApi

    head_for(DRAFT, OTHER).push_to_hub("org/mislabelled")
    card = hub_server.state.repos["org/mislabelled"].files("main")["README.md"].decode()
    HfApi().upload_file(path_or_fileobj=card.replace(OTHER, TARGET, 1).encode(), path_in_repo="README.md",
                        repo_id="org/mislabelled")
    assert find_heads(DRAFT, TARGET) == ["org/mislabelled"]  # the card claims the pair ...
    with pytest.raises(HeadNotFoundError, match=f"No acceptance head for {DRAFT} -> {TARGET}.*1 named them"):
        AcceptanceHead.for_pair(DRAFT, TARGET)  # ... its training record does not


def test_a_head_for_another_pair_is_refused_naming_both_pairs():
    head = head_for(DRAFT, OTHER)
    with pytest.raises(WrongPairError, match=f"trained for {DRAFT} -> {OTHER}, not for {DRAFT} -> {TARGET}"):
        head.check_pair(DRAFT, TARGET)
    head.check_pair(DRAFT, OTHER)
    head.check_pair("/local/draft", "/local/target")  # local folders are not compared


def test_the_hub_method_finds_the_head_with_head_auto(hub_server, tmp_path, monkeypatch):
    """`generate(custom_generate=repo, draft_model=<id>, head="auto")`: transformers loads the method from the
    Hub, the method loads the draft by id and finds the pair's head on the Hub."""
    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    target, draft = tiny_pair("llama", noise=0.02, seed=1)
    draft.save_pretrained(tmp_path / "draft")
    from huggingface_hub import HfApi

    HfApi().create_repo(DRAFT)
    HfApi().upload_folder(repo_id=DRAFT, folder_path=tmp_path / "draft")
    target.config._name_or_path = TARGET  # as if loaded with from_pretrained(TARGET)
    head_for(DRAFT, TARGET, seed=3).push_to_hub("org/the-head")
    push_method("org/specdecpp")
    ids = torch.tensor([[2, 5, 6, 7, 8, 9]])
    reference = target.generate(ids, max_new_tokens=12, do_sample=False)
    out = target.generate(ids, custom_generate="org/specdecpp", trust_remote_code=True, draft_model=DRAFT,
                          head="auto", max_new_tokens=12, do_sample=False, return_dict_in_generate=True)
    assert torch.equal(out.sequences, reference)
    assert out.speculation_stats.rounds > 0
    with pytest.raises(WrongPairError, match="trained for"):
        head_for(DRAFT, OTHER).push_to_hub("org/wrong-head")
        target.generate(ids, custom_generate="org/specdecpp", trust_remote_code=True, draft_model=DRAFT,
                        head="org/wrong-head", max_new_tokens=4)
