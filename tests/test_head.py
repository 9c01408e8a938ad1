"""The acceptance head: forward pass, save/load round trip, reference-format loading, strict-load errors, model card."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from hf_specdecpp.head import HeadPolicy
from hf_specdecpp.head.modeling import AcceptanceHead
from hf_specdecpp.utils.io import read_json

H = 8
INFO = {
    "draft_model_id": "org/tiny-draft",
    "target_model_id": "org/tiny-target",
    "decoding": {"do_sample": False, "temperature": 0.0},
}
POLICY = HeadPolicy(threshold=0.35, decoding={"do_sample": False, "temperature": 0.0})


def read_head_config(folder) -> dict:
    return read_json(folder / "config.json")


def make_head(seed: int = 0, hidden_size: int = H, num_layers: int = 3, policy: HeadPolicy | None = POLICY,
              **info) -> AcceptanceHead:
    torch.manual_seed(seed)
    head = AcceptanceHead(hidden_size=hidden_size, num_layers=num_layers)
    head.training_info = {**INFO, **info}
    head.policy = policy
    with torch.no_grad():  # default init gives near-0.5 outputs: spread the weights so tests can tell heads apart
        for p in head.parameters():
            p.normal_(0.0, 0.5)
    return head.eval()


def write_reference_checkpoint(path, hidden_size: int, num_layers: int, seed: int = 0):
    """A checkpoint as the SpecDec++ reference writes it: tied blocks, a two-logit final layer, a pickled .bin."""
    torch.manual_seed(seed)
    block_w, block_b = torch.randn(hidden_size, hidden_size) * 0.3, torch.randn(hidden_size) * 0.3
    final_w, final_b = torch.randn(2, hidden_size), torch.randn(2)
    state = {}
    for i in range(num_layers):  # `[ResBlock(h)] * D` repeats ONE module: every block holds the same tensors
        state[f"model.{i}.linear.weight"] = block_w
        state[f"model.{i}.linear.bias"] = block_b
    state[f"model.{num_layers}.weight"] = final_w
    state[f"model.{num_layers}.bias"] = final_b
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"hidden_size": hidden_size, "num_layers": num_layers}))
    torch.save(state, path / "pytorch_model.bin")
    return block_w, block_b, final_w, final_b


def reference_probability(x, num_layers, block_w, block_b, final_w, final_b):
    """The reference forward, written out by hand: softmax(final(block^D(x)))[..., 1]."""
    x = x.double()
    for _ in range(num_layers):
        x = x + torch.nn.functional.silu(x @ block_w.double().T + block_b.double())
    logits = x @ final_w.double().T + final_b.double()
    return torch.softmax(logits, dim=-1)[..., 1]


# ---------------------------------------------------------------------------------------------------- forward
def test_forward_shape_and_range():
    head = make_head()
    x = torch.randn(2, 5, H)
    p = head(x)
    assert p.shape == (2, 5)
    assert p.dtype == torch.float32
    assert torch.all((p > 0) & (p < 1))
    assert not torch.allclose(p, p.flatten()[0].expand_as(p))  # not a constant
    assert head(torch.randn(H)).shape == ()
    assert torch.allclose(head.logits(x).sigmoid(), p)


def test_forward_runs_in_head_dtype_for_bf16_hidden_states():
    head = make_head()
    x = torch.randn(3, H).to(torch.bfloat16)
    p = head(x)
    assert p.dtype == torch.float32
    assert torch.allclose(p, head(x.float()))


def test_residual_blocks_are_independent():
    head = make_head(num_layers=3)
    weights = [block.linear.weight for block in head.blocks]
    assert len({id(w) for w in weights}) == 3
    assert len({w.data_ptr() for w in weights}) == 3
    assert not torch.equal(weights[0], weights[1])
    n = sum(p.numel() for p in head.parameters())
    assert n == 3 * (H * H + H) + H + 1
    keys = set(head.state_dict())
    assert {f"blocks.{i}.linear.weight" for i in range(3)} <= keys
    with torch.no_grad():
        weights[0].add_(1.0)
    assert not torch.equal(weights[0], weights[1])


def test_invalid_sizes_are_rejected():
    with pytest.raises(ValueError, match="hidden_size"):
        AcceptanceHead(hidden_size=0)
    with pytest.raises(ValueError, match="num_layers"):
        AcceptanceHead(hidden_size=4, num_layers=-1)


# ------------------------------------------------------------------------------------------------- round trip
def test_save_and_load_round_trip(tmp_path):
    head = make_head(num_layers=2)
    head.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"model.safetensors", "config.json", "README.md", "policy.json",
                                                    "training_info.json"}
    assert set(load_file(tmp_path / "model.safetensors")) == set(head.state_dict())

    config = read_head_config(tmp_path)  # the architecture only
    assert config == {"model_type": "specdecpp-acceptance-head", "format_version": 2, "hidden_size": H,
                      "num_layers": 2, "input_state": "drafted_token", "use_confidence_features": False}

    loaded = AcceptanceHead.from_pretrained(tmp_path)
    assert not loaded.training
    assert (loaded.hidden_size, loaded.num_layers) == (H, 2)
    assert loaded.policy == POLICY and loaded.training_info == INFO
    assert (loaded.draft_model_id, loaded.target_model_id) == ("org/tiny-draft", "org/tiny-target")
    assert loaded.trained_for_sampling is False
    for key, tensor in head.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    x = torch.randn(4, H)
    assert torch.equal(loaded(x), head(x))


def test_policy_and_training_info_are_saved_apart_from_the_config(tmp_path):
    head = make_head()
    head.policy = HeadPolicy(threshold=0.7, max_candidates=4, cost_ratio=0.05, verify_costs=(1.0, 1.1))
    head.training_info = {"steps": 10}
    head.save_pretrained(tmp_path)
    assert set(read_head_config(tmp_path)) == {"model_type", "format_version", "hidden_size", "num_layers",
                                               "input_state", "use_confidence_features"}
    assert read_json(tmp_path / "policy.json")["threshold"] == 0.7
    assert read_json(tmp_path / "training_info.json") == {"steps": 10}
    loaded = AcceptanceHead.from_pretrained(tmp_path)
    assert loaded.policy.threshold == 0.7 and loaded.policy.cost_ratio == 0.05
    assert loaded.policy.verify_costs == (1.0, 1.1) and loaded.policy.max_candidates == 4
    head.policy = None  # saving without a policy removes the stale file
    head.save_pretrained(tmp_path)
    assert not (tmp_path / "policy.json").exists() and AcceptanceHead.from_pretrained(tmp_path).policy is None


@pytest.mark.parametrize("bad", [{"threshold": 1.5}, {"threshold": 0.5, "max_candidates": 0},
                                 {"threshold": 0.5, "cost_ratio": -1}, {"threshold": 0.5, "colour": "red"}])
def test_bad_policy_file_names_the_file(tmp_path, bad):
    make_head().save_pretrained(tmp_path)
    (tmp_path / "policy.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError) as info:
        AcceptanceHead.from_pretrained(tmp_path)
    assert str(tmp_path / "policy.json") in str(info.value)


def test_format_1_head_folder_still_loads(tmp_path):
    """A head saved before the policy moved out of config.json: its metadata becomes policy and training info."""
    head = make_head(num_layers=1, policy=None)
    head.save_pretrained(tmp_path)
    (tmp_path / "training_info.json").unlink()
    legacy = {"hidden_size": H, "num_layers": 1, "draft_model_id": "org/d", "target_model_id": "org/t",
              "temperature": 0.7, "recommended_threshold": 0.44, "recommended_max_candidates": 3, "cost_ratio": 0.4,
              "input_state": "drafted_token", "use_confidence_features": False,
              "training_info": {"calibration": {"verify_costs": [1.0, 1.08], "speedup": 1.3, "cost": {"device": "cpu"}}}}
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    loaded = AcceptanceHead.from_pretrained(tmp_path)
    assert (loaded.policy.threshold, loaded.policy.max_candidates, loaded.policy.cost_ratio) == (0.44, 3, 0.4)
    assert loaded.policy.verify_costs == (1.0, 1.08) and loaded.policy.simulation["speedup"] == 1.3
    assert loaded.policy.measured_on.device_type == "cpu" and loaded.policy.greedy is False
    assert (loaded.draft_model_id, loaded.target_model_id) == ("org/d", "org/t") and loaded.trained_for_sampling
    x = torch.randn(3, H)
    assert torch.equal(loaded(x), head(x))
    loaded.save_pretrained(tmp_path)  # re-saving migrates the folder
    assert "recommended_threshold" not in read_head_config(tmp_path)
    assert read_json(tmp_path / "policy.json")["threshold"] == 0.44


def test_huge_config_with_tiny_weights_is_refused_before_building(tmp_path):
    """A config naming a 16384-wide, 4-layer head next to a 2 KB weights file: refused from the file header, without
    building a 4 GB module."""
    make_head(hidden_size=4, num_layers=1).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 16384, "num_layers": 4}))
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(ValueError, match="do not fit the head's config"):
        AcceptanceHead.from_pretrained(tmp_path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 << 20  # nothing near 4.4 GB was allocated


@pytest.mark.parametrize("config,field", [({"hidden_size": "8"}, "hidden_size"), ({"hidden_size": 8, "num_layers": 2.5}, "num_layers"),
                                           ({"hidden_size": 8, "input_state": "middle"}, "input_state"),
                                           ({"hidden_size": 8, "use_confidence_features": "yes"}, "use_confidence_features"),
                                           ({"hidden_size": -3}, "hidden_size")])
def test_wrong_types_in_the_config_name_file_and_field(tmp_path, config, field):
    make_head().save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as info:
        AcceptanceHead.from_pretrained(tmp_path)
    assert "config.json" in str(info.value) and field in str(info.value)


def test_corrupt_config_json_names_the_file(tmp_path):
    make_head().save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"hidden_size": 8,')
    with pytest.raises(ValueError, match="not valid JSON") as info:
        AcceptanceHead.from_pretrained(tmp_path)
    assert "config.json" in str(info.value)


def test_save_refuses_a_folder_of_someone_else(tmp_path):
    """A transformers model folder (its config.json) or stray weights are never overwritten by a head save."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(FileExistsError, match="not an acceptance-head config"):
        make_head().save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "config.json").read_text())["model_type"] == "llama"
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.safetensors").write_bytes(b"user data")
    with pytest.raises(FileExistsError, match="model.safetensors"):
        make_head().save_pretrained(tmp_path / "weights")
    assert (tmp_path / "weights" / "model.safetensors").read_bytes() == b"user data"


def test_a_card_edited_by_hand_is_kept_and_ours_is_regenerated(tmp_path):
    head = make_head()
    head.save_pretrained(tmp_path)
    first = (tmp_path / "README.md").read_text()
    head.policy = HeadPolicy(threshold=0.66)
    head.save_pretrained(tmp_path)
    regenerated = (tmp_path / "README.md").read_text()
    assert regenerated != first and "h = 0.66" in regenerated  # our unedited card follows the head
    (tmp_path / "README.md").write_text(regenerated + "\nMy own notes.\n")
    head.policy = HeadPolicy(threshold=0.5)
    head.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text().endswith("My own notes.\n")  # the user's edit survives
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "README.md").write_text("# My project\n")
    head.save_pretrained(tmp_path / "other")
    assert (tmp_path / "other" / "README.md").read_text() == "# My project\n"


def test_zero_layer_head_round_trip(tmp_path):
    head = make_head(num_layers=0)
    head.save_pretrained(tmp_path)
    loaded = AcceptanceHead.from_pretrained(tmp_path)
    x = torch.randn(3, H)
    assert torch.equal(loaded(x), head(x))


# ---------------------------------------------------------------------------------------- reference checkpoint
@pytest.mark.parametrize("num_layers", [3, 1])
def test_reference_checkpoint_matches_reference_forward(tmp_path, num_layers):
    tensors = write_reference_checkpoint(tmp_path, hidden_size=6, num_layers=num_layers)
    head = AcceptanceHead.from_pretrained(tmp_path)
    assert (head.hidden_size, head.num_layers) == (6, num_layers)
    x = torch.randn(4, 7, 6)
    expected = reference_probability(x, num_layers, *tensors)
    assert torch.allclose(head(x).double(), expected, atol=1e-6, rtol=0)
    # our blocks are separate parameters even though the reference file ties them
    if num_layers > 1:
        assert head.blocks[0].linear.weight.data_ptr() != head.blocks[1].linear.weight.data_ptr()


def test_reference_checkpoint_resaved_as_safetensors(tmp_path):
    tensors = write_reference_checkpoint(tmp_path / "ref", hidden_size=6, num_layers=2)
    head = AcceptanceHead.from_pretrained(tmp_path / "ref")
    head.save_pretrained(tmp_path / "ours")
    again = AcceptanceHead.from_pretrained(tmp_path / "ours")
    x = torch.randn(5, 6)
    assert torch.allclose(again(x).double(), reference_probability(x, 2, *tensors), atol=1e-6, rtol=0)


def test_reference_checkpoint_with_wrong_num_layers_names_keys(tmp_path):
    write_reference_checkpoint(tmp_path, hidden_size=6, num_layers=2)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 6, "num_layers": 3}))
    with pytest.raises(ValueError) as info:
        AcceptanceHead.from_pretrained(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "pytorch_model.bin") in message
    assert "blocks.2.linear.weight" in message and "model.2.weight" in message


# ------------------------------------------------------------------------------------------ strict-load errors
def _saved_head(tmp_path, **kwargs):
    make_head(**kwargs).save_pretrained(tmp_path)
    return tmp_path / "model.safetensors", load_file(tmp_path / "model.safetensors")


def test_missing_keys_are_an_error(tmp_path):
    path, state = _saved_head(tmp_path)
    del state["classifier.bias"], state["blocks.1.linear.weight"]
    save_file(state, path)
    with pytest.raises(ValueError, match="missing keys") as info:
        AcceptanceHead.from_pretrained(tmp_path)
    assert str(path) in str(info.value)
    assert "classifier.bias" in str(info.value) and "blocks.1.linear.weight" in str(info.value)


def test_strict_false_tolerates_missing_keys(tmp_path):
    path, state = _saved_head(tmp_path)
    del state["classifier.bias"]
    save_file(state, path)
    head = AcceptanceHead.from_pretrained(tmp_path, strict=False)
    assert torch.equal(head.classifier.weight, state["classifier.weight"])


def test_config_with_more_layers_than_the_weights_is_an_error(tmp_path):
    path, _ = _saved_head(tmp_path, num_layers=2)
    config = read_head_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_layers": 3}))
    with pytest.raises(ValueError, match=r"missing keys .*blocks\.2\.linear\.weight") as info:
        AcceptanceHead.from_pretrained(tmp_path)
    assert str(path) in str(info.value)


def test_unexpected_keys_are_an_error(tmp_path):
    path, state = _saved_head(tmp_path)
    state["extra.weight"] = torch.zeros(2)
    save_file(state, path)
    with pytest.raises(ValueError, match="unexpected keys") as info:
        AcceptanceHead.from_pretrained(tmp_path)
    assert str(path) in str(info.value) and "extra.weight" in str(info.value)


def test_shape_mismatch_is_an_error_even_when_not_strict(tmp_path):
    path, state = _saved_head(tmp_path)
    state["blocks.0.linear.weight"] = torch.zeros(H, H // 2)
    save_file(state, path)
    for strict in (True, False):
        with pytest.raises(ValueError, match="shape mismatches") as info:
            AcceptanceHead.from_pretrained(tmp_path, strict=strict)
        message = str(info.value)
        assert str(path) in message
        assert f"blocks.0.linear.weight: file ({H}, {H // 2}) vs config ({H}, {H})" in message


def test_missing_weights_file_is_an_error(tmp_path):
    _saved_head(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(OSError, match="No acceptance-head weights") as info:
        AcceptanceHead.from_pretrained(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "model.safetensors" in str(info.value) and "pytorch_model.bin" in str(info.value)


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", b"\xff" * 64])
def test_corrupt_safetensors_is_an_error(tmp_path, content):
    path, _ = _saved_head(tmp_path)
    path.write_bytes(content)
    with pytest.raises(OSError, match="Could not read acceptance-head weights") as info:
        AcceptanceHead.from_pretrained(tmp_path)
    assert str(path) in str(info.value)


def test_truncated_safetensors_is_an_error(tmp_path):
    path, _ = _saved_head(tmp_path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(OSError) as info:
        AcceptanceHead.from_pretrained(tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"garbage, not a pickle", None])
def test_corrupt_reference_bin_is_an_error(tmp_path, content):
    write_reference_checkpoint(tmp_path, hidden_size=6, num_layers=2)
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(path.read_bytes()[:100] if content is None else content)  # None: truncated zip
    with pytest.raises(OSError, match="Could not read acceptance-head weights") as info:
        AcceptanceHead.from_pretrained(tmp_path)
    assert str(path) in str(info.value)


def test_config_without_hidden_size_is_a_clear_error(tmp_path):
    _saved_head(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"num_layers": 3}))
    with pytest.raises(OSError, match="hidden_size"):
        AcceptanceHead.from_pretrained(tmp_path)


def test_directory_without_config_is_a_clear_error(tmp_path):
    _saved_head(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(OSError, match="config.json"):
        AcceptanceHead.from_pretrained(tmp_path)


@pytest.mark.parametrize("content, problem", [
    (b"[1, 2]", "must hold a JSON object, got list"),
    (b'{"hidden_size": 8, "name": "\xff\xfe"}', "is not UTF-8 text"),
])
def test_config_that_is_not_a_utf8_json_object_names_the_file(tmp_path, content, problem):
    _saved_head(tmp_path)
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(ValueError, match=problem) as info:
        AcceptanceHead.from_pretrained(tmp_path)
    assert str(tmp_path / "config.json") in str(info.value)


@pytest.mark.parametrize("content", [b"", b"garbage", b"\xff" * 64])
def test_corrupt_traces_name_the_file(tmp_path, content):
    head = make_head()
    head.traces = {"probabilities": torch.rand(5)}
    head.save_pretrained(tmp_path)
    (tmp_path / "traces.safetensors").write_bytes(content)
    with pytest.raises(ValueError, match="dev traces") as info:
        AcceptanceHead.from_pretrained(tmp_path)
    assert str(tmp_path / "traces.safetensors") in str(info.value)


@pytest.mark.parametrize("name", ["missing", "./typo", "nested/a/b"])
def test_a_missing_local_folder_says_so_without_asking_the_hub(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nested").mkdir()
    path = str(tmp_path / name) if name == "missing" else name
    with pytest.raises(FileNotFoundError, match="No such acceptance head folder") as info:
        AcceptanceHead.from_pretrained(path)
    assert name.lstrip("./") in str(info.value) and "Repo id" not in str(info.value)


def test_a_file_path_is_not_taken_for_a_repo_id(tmp_path):
    path, _ = _saved_head(tmp_path)
    with pytest.raises(NotADirectoryError, match="is a file, not a folder") as info:
        AcceptanceHead.from_pretrained(path)
    assert str(path) in str(info.value)


# -------------------------------------------------------------------------------------------------- model card
def _front_matter(card: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", card, re.DOTALL)
    assert match, card[:200]
    return yaml.safe_load(match[1])


def test_model_card(tmp_path):
    make_head().save_pretrained(tmp_path, model_card_kwargs={"repo_id": "org/my-head"})
    card = (tmp_path / "README.md").read_text()
    metadata = _front_matter(card)
    assert metadata["library_name"] == "hf-specdecpp"
    assert {"speculative-decoding", "specdec++", "acceptance-head"} <= set(metadata["tags"])
    assert "- draft model: `org/tiny-draft`" in card
    assert "- target model: `org/tiny-target`" in card
    assert "calibrated policy: threshold h = 0.35, at most default candidates per round" in card
    assert "decoding the head was trained for: greedy" in card
    assert "```python" in card
    assert 'AcceptanceHead.from_pretrained("org/my-head")' in card
    assert 'AutoModelForCausalLM.from_pretrained("org/tiny-draft"' in card
    assert "candidate_generator=SpecDecPPMethod(head=head)" in card
    assert "2405.19715" in card
    assert "hf-specdecpp recalibrate" in card


def test_model_card_placeholders_and_sampling(tmp_path):
    head = AcceptanceHead(hidden_size=4, num_layers=1)
    head.training_info = {"decoding": {"do_sample": True, "temperature": 0.7}}
    head.save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "<draft model id>" in card and "<target model id>" in card
    assert "sampling, temperature 0.7" in card and "calibrated policy: not calibrated" in card
    assert "{{" not in card
