"""Push to and pull from the Hub through the REAL huggingface_hub client (a local in-memory Hub, or the cache)."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

from hf_specdecpp.head import HeadPolicy
from hf_specdecpp.head.modeling import AcceptanceHead

from test_head import H, make_head, reference_probability, write_reference_checkpoint


def assert_same_head(a: AcceptanceHead, b: AcceptanceHead) -> None:
    assert (a.hidden_size, a.num_layers) == (b.hidden_size, b.num_layers)
    for key in ("architecture", "policy", "training_info", "draft_model_id", "target_model_id", "decoding"):
        assert getattr(a, key) == getattr(b, key), key
    assert a.state_dict().keys() == b.state_dict().keys()
    for key, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[key]), key


def test_push_then_pull_by_repo_id(hub_server, hf_home):
    head = make_head(num_layers=2)
    commit = head.push_to_hub("org/name")
    repo = hub_server.state.repos["org/name"]
    assert commit.oid == repo.head
    assert set(repo.files("main")) == {"config.json", "model.safetensors", "README.md", "policy.json",
                                       "training_info.json"}
    calls = {(method, path) for method, path in hub_server.state.requests}
    assert ("POST", "/api/validate-yaml") in calls  # the client validated the model card's metadata
    assert ("POST", "/api/models/org/name/commit/main") in calls

    loaded = AcceptanceHead.from_pretrained("org/name")
    assert_same_head(loaded, head)
    assert not loaded.training
    x = torch.randn(3, H)
    assert torch.equal(loaded(x), head(x))
    snapshot = hf_home / "hub" / "models--org--name" / "snapshots" / repo.head
    assert (snapshot / "model.safetensors").is_file() and (snapshot / "config.json").is_file()

    card = open(hf_hub_download("org/name", "README.md")).read()
    assert "library_name: hf-specdecpp" in card
    assert "- speculative-decoding" in card
    assert "- draft model: `org/tiny-draft`" in card and "- target model: `org/tiny-target`" in card
    assert "calibrated policy: threshold h = 0.35" in card
    assert 'AcceptanceHead.from_pretrained("org/name")' in card  # push_to_hub fills in its repo id


def test_second_push_updates_config_and_old_revision_stays(hub_server):
    head = make_head()
    first = head.push_to_hub("org/name").oid
    head.policy = HeadPolicy(threshold=0.8)
    second = head.push_to_hub("org/name").oid
    assert first != second
    # the client skipped the unchanged weights and config (the preupload answer carries each stored file's oid)
    assert hub_server.state.commits[-1] == ("org/name", ["README.md", "policy.json"])
    assert AcceptanceHead.from_pretrained("org/name").policy.threshold == 0.8
    assert AcceptanceHead.from_pretrained("org/name", revision=first).policy.threshold == 0.35
    assert "calibrated policy: threshold h = 0.8" in open(hf_hub_download("org/name", "README.md")).read()


def test_snapshot_download_and_local_load(hub_server):
    head = make_head()
    head.push_to_hub("org/name")
    folder = snapshot_download("org/name")
    assert {"config.json", "model.safetensors", "README.md"} <= set(os.listdir(folder))
    assert_same_head(AcceptanceHead.from_pretrained(folder), head)


def test_reference_format_repo_on_the_hub(hub_server, tmp_path):
    """A repo with only `pytorch_model.bin`: model.safetensors is an EntryNotFound 404, then the .bin loads."""
    tensors = write_reference_checkpoint(tmp_path / "ref", hidden_size=6, num_layers=3)
    api = HfApi()
    api.create_repo("org/ref")
    api.upload_folder(repo_id="org/ref", folder_path=tmp_path / "ref")
    head = AcceptanceHead.from_pretrained("org/ref")
    x = torch.randn(4, 6)
    assert torch.allclose(head(x).double(), reference_probability(x, 3, *tensors), atol=1e-6, rtol=0)
    assert ("HEAD", "/org/ref/resolve/main/model.safetensors") in hub_server.state.requests


def test_repo_without_weights_is_an_error(hub_server, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 4, "num_layers": 1}))
    HfApi().create_repo("org/empty")
    HfApi().upload_folder(repo_id="org/empty", folder_path=tmp_path)
    with pytest.raises(OSError, match="No acceptance-head weights in 'org/empty'"):
        AcceptanceHead.from_pretrained("org/empty")


def test_missing_repo_is_a_clear_error(hub_server):
    # not "config.json must record hidden_size": the client's own error, naming the repo
    with pytest.raises(RepositoryNotFoundError, match="org/does-not-exist"):
        AcceptanceHead.from_pretrained("org/does-not-exist")


def test_missing_revision_is_a_clear_error(hub_server):
    make_head().push_to_hub("org/name")
    with pytest.raises(RevisionNotFoundError, match="no-such-branch"):
        AcceptanceHead.from_pretrained("org/name", revision="no-such-branch")


def test_repo_without_config_is_a_clear_error(hub_server, tmp_path):
    make_head().save_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    HfApi().create_repo("org/no-config")
    HfApi().upload_folder(repo_id="org/no-config", folder_path=tmp_path)
    with pytest.raises(OSError, match="No usable config.json .*'org/no-config'.*hidden_size"):
        AcceptanceHead.from_pretrained("org/no-config")


def _populate_cache(cache, repo_id: str, files: dict[str, bytes], sha: str = "a" * 40):
    """Lay out a Hub cache entry by hand: `models--ORG--NAME/snapshots/<sha>/...` plus `refs/main`."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / sha
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(sha)


@pytest.fixture
def offline(hf_home, monkeypatch):
    """Offline mode with no server at all (`HF_HUB_OFFLINE=1`, read by huggingface_hub at import time)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hf_home / "hub"


def test_offline_pull_from_prepopulated_cache(offline, tmp_path):
    head = make_head(num_layers=2)
    head.save_pretrained(tmp_path)
    _populate_cache(offline, "org/name", {name: (tmp_path / name).read_bytes()
                                          for name in ("config.json", "model.safetensors", "policy.json",
                                                       "training_info.json")})
    loaded = AcceptanceHead.from_pretrained("org/name")
    assert_same_head(loaded, head)


def test_offline_pull_of_reference_format_from_cache(offline, tmp_path):
    tensors = write_reference_checkpoint(tmp_path, hidden_size=6, num_layers=2)
    _populate_cache(offline, "org/ref", {name: (tmp_path / name).read_bytes()
                                         for name in ("config.json", "pytorch_model.bin")})
    head = AcceptanceHead.from_pretrained("org/ref")
    x = torch.randn(3, 6)
    assert torch.allclose(head(x).double(), reference_probability(x, 2, *tensors), atol=1e-6, rtol=0)


def test_offline_pull_of_uncached_repo_is_an_error(offline):
    # raised by huggingface_hub itself (the mixin only swallows HTTP errors): a FileNotFoundError
    with pytest.raises(LocalEntryNotFoundError, match="cannot find the requested files in the local cache") as info:
        AcceptanceHead.from_pretrained("org/not-cached")
    assert "no local folder named 'org/not-cached'" in str(info.value)


@pytest.mark.parametrize("config, problem", [(b"[1, 2]", "must hold a JSON object"), (b"\xff\xfe", "not UTF-8")])
def test_offline_cache_with_a_bad_config_names_the_file(offline, tmp_path, config, problem):
    make_head().save_pretrained(tmp_path)
    _populate_cache(offline, "org/badcfg", {"config.json": config,
                                            "model.safetensors": (tmp_path / "model.safetensors").read_bytes()})
    with pytest.raises(ValueError, match=rf"models--org--badcfg.*config\.json.*{problem}"):
        AcceptanceHead.from_pretrained("org/badcfg")


def test_offline_cache_with_corrupt_weights_names_the_file(offline, tmp_path):
    make_head().save_pretrained(tmp_path)
    _populate_cache(offline, "org/bad", {"config.json": (tmp_path / "config.json").read_bytes(),
                                         "model.safetensors": b"garbage"})
    with pytest.raises(OSError, match=r"models--org--bad.*model\.safetensors"):
        AcceptanceHead.from_pretrained("org/bad")


def test_fixtures_keep_the_client_away_from_the_real_hub(hub_server, hf_home):
    assert constants.ENDPOINT == hub_server.url == os.environ["HF_ENDPOINT"]
    assert constants.HUGGINGFACE_CO_URL_TEMPLATE.startswith(hub_server.url + "/")
    assert HfApi().endpoint == hub_server.url
    assert constants.HF_HUB_CACHE == str(hf_home / "hub")
    assert not os.path.exists(os.path.expanduser("~/.cache/huggingface/hub/models--org--name"))
    with pytest.raises(OSError, match="must not reach the network"):
        socket.getaddrinfo("huggingface.co", 443)
    with pytest.raises(Exception, match="must not reach the network"):
        HfApi(endpoint="https://huggingface.co").model_info("org/name")

