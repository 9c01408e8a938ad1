"""SpecDec++ as a Hub `custom_generate` method, loaded by transformers itself: from a local folder, from the local
Hub endpoint after `push_method`, and refused with transformers' own message where hf-specdecpp is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import transformers.dynamic_module_utils as dynamic_module_utils

from hf_specdecpp.integration import hub_method
from hf_specdecpp.integration.hub_method import TEMPLATE, push_method, write_method_repo
from hf_specdecpp.testing import tiny_pair

from helpers import random_head

IDS = torch.tensor([[2, 5, 6, 7, 8, 9]])


@pytest.fixture(scope="module")
def pair():
    return tiny_pair("llama", noise=0.02, seed=1)


@pytest.fixture(autouse=True)
def modules_cache(tmp_path, monkeypatch):
    """transformers copies remote code into HF_MODULES_CACHE: keep it in the test's folder."""
    cache = tmp_path / "modules"
    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(cache))
    monkeypatch.syspath_prepend(str(cache))
    return cache


def test_the_template_is_a_custom_generate_repo():
    readme = (TEMPLATE / "README.md").read_text()
    assert readme.startswith("---\n") and "- custom_generate" in readme.split("---")[1]
    assert "custom_generate=" in readme and "trust_remote_code=True" in readme
    assert (TEMPLATE / "custom_generate" / "requirements.txt").read_text().split()[0].startswith("hf-specdecpp")
    assert "def generate" not in (TEMPLATE / "custom_generate" / "generate.py").read_text()  # code ships with us


@pytest.mark.parametrize("options", [
    {},  # no head: the SVIP rule
    {"head": "HEAD", "method_kwargs": {"threshold": 0.5, "max_candidates": 5}},
    {"method": "fixed-k", "method_kwargs": {"num_candidates": 3}},
    {"method": "dyspec", "method_kwargs": {"budget": 6}},
])
def test_transformers_loads_the_method_from_a_local_folder(pair, tmp_path, options):
    target, draft = pair
    folder = write_method_repo(tmp_path / "method")
    if options.get("head") == "HEAD":
        options = {**options, "head": random_head(32, seed=2)}
    reference = target.generate(IDS, max_new_tokens=16, do_sample=False)
    out = target.generate(IDS, custom_generate=str(folder), trust_remote_code=True, draft_model=draft,
                          max_new_tokens=16, do_sample=False, return_dict_in_generate=True, **options)
    assert torch.equal(out.sequences, reference)
    assert out.speculation_stats.rounds > 0


def test_a_local_folder_still_needs_trust_remote_code(pair, tmp_path):
    target, draft = pair
    folder = write_method_repo(tmp_path / "method")
    with pytest.raises(ValueError, match="trust_remote_code"):
        target.generate(IDS, custom_generate=str(folder), draft_model=draft, max_new_tokens=4)


def test_push_method_then_load_it_from_the_hub_by_repo_id(pair, hub_server, tmp_path):
    target, draft = pair
    push_method("org/specdecpp-method")
    files = hub_server.state.repos["org/specdecpp-method"].files("main")
    assert set(files) == {"README.md", "custom_generate/generate.py", "custom_generate/requirements.txt"}
    # the draft and the head travel as ids too: a local folder for each
    draft.save_pretrained(tmp_path / "draft")
    random_head(32, seed=4).save_pretrained(tmp_path / "head")
    reference = target.generate(IDS, max_new_tokens=16, do_sample=False)
    out = target.generate(IDS, custom_generate="org/specdecpp-method", trust_remote_code=True,
                          draft_model=str(tmp_path / "draft"), head=str(tmp_path / "head"), max_new_tokens=16,
                          do_sample=False)
    assert torch.equal(out, reference)
    requested = {path for _, path in hub_server.state.requests}
    assert any(p.endswith("custom_generate/generate.py") for p in requested)
    assert any(p.endswith("custom_generate/requirements.txt") for p in requested)  # transformers checked it


def test_push_method_into_an_existing_repo_keeps_its_readme(hub_server):
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo("org/model")
    api.upload_file(path_or_fileobj=b"---\nlicense: mit\n---\n# my model\n", path_in_repo="README.md",
                    repo_id="org/model")
    push_method("org/model")
    files = hub_server.state.repos["org/model"].files("main")
    assert files["README.md"] == b"---\nlicense: mit\n---\n# my model\n"
    assert "custom_generate/generate.py" in files


def test_bad_arguments_name_the_argument(pair, tmp_path):
    target, draft = pair
    folder = write_method_repo(tmp_path / "method")
    call = dict(custom_generate=str(folder), trust_remote_code=True, max_new_tokens=4)
    with pytest.raises(ValueError, match="needs a draft model.*draft_model="):
        target.generate(IDS, **call)
    with pytest.raises(ValueError, match="method='specdec\\+\\+' needs an acceptance head"):
        target.generate(IDS, draft_model=draft, method="specdec++", **call)
    with pytest.raises(ValueError, match="method='beam' is not a decoding method"):
        target.generate(IDS, draft_model=draft, method="beam", **call)
    with pytest.raises(FileExistsError):
        write_method_repo(folder)


def test_loaded_drafts_are_reused_across_calls(pair, tmp_path, monkeypatch):
    target, draft = pair
    draft.save_pretrained(tmp_path / "draft")
    monkeypatch.setattr(hub_method, "_LOADED", {})
    first = hub_method._load_draft(str(tmp_path / "draft"), target)
    assert hub_method._load_draft(str(tmp_path / "draft"), target) is first
    assert first.dtype == target.dtype


def test_without_hf_specdecpp_transformers_says_what_to_install(tmp_path):
    """A user without the package gets transformers' own requirements message, before any of our code runs."""
    folder = write_method_repo(tmp_path / "method")
    code = textwrap.dedent(f"""
        import importlib.abc, importlib.metadata as metadata, sys

        class HidePackage(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "hf_specdecpp":
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

        sys.meta_path.insert(0, HidePackage())
        version = metadata.version
        def hidden_version(name):
            if name.replace("_", "-").lower() == "hf-specdecpp":
                raise metadata.PackageNotFoundError(name)
            return version(name)
        metadata.version = hidden_version

        import torch, transformers.dynamic_module_utils as dm
        dm.HF_MODULES_CACHE = {str(tmp_path / "modules")!r}
        from transformers import LlamaConfig, LlamaForCausalLM
        config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1)
        model = LlamaForCausalLM(config)
        try:
            model.generate(torch.tensor([[1, 2, 3]]), custom_generate={str(folder)!r}, trust_remote_code=True,
                           max_new_tokens=2)
        except Exception as err:
            print("ERROR", type(err).__name__, err)
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "ERROR" in out.stdout, out.stderr[-2000:]
    message = out.stdout.split("ERROR", 1)[1]
    assert "hf_specdecpp" in message.replace("-", "_") and "pip install" in message, message
