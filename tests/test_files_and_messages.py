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

import hf_specdecpp

ROOT = Path(hf_specdecpp.__file__).resolve().parents[1]  # the package under test, for subprocesses


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
    from hf_specdecpp.training.common import hub_repo_id, same_model_id
    from hf_specdecpp.training.head_files import trained_head_info

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


# ---------------------------------------------------------------------------------------------- CLI messages
def _invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_a_missing_extra_keeps_its_extra_in_the_cli_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "accelerate", None)  # `import accelerate` now raises ImportError
    (tmp_path / "data").mkdir()
    r = _invoke("train", tmp_path / "data", tmp_path / "head")
    assert r.exit_code == 1
    assert 'pip install "hf-specdecpp[train]"' in r.output


def test_help_shows_flags_without_a_value_and_arguments_in_capitals():
    r = _invoke("make-data", "--help")
    assert r.exit_code == 0
    assert "OUTPUT_DIR" in r.output and "{output_dir}" not in r.output
    chat = next(line for line in r.output.splitlines() if "--chat" in line)
    assert "<bool>" not in chat
    private = next(line for line in _invoke("push", "--help").output.splitlines() if "--private" in line)
    assert "private" in private.split("--private", 1)[1].lower()  # it has a help text


def test_the_prompt_source_error_names_cli_options(tmp_path):
    from hf_specdecpp.training import TrainingError, make_data

    with pytest.raises(TrainingError, match="--prompts FILE.jsonl or --dataset NAME") as err:
        make_data(tmp_path / "d", draft="org/d", target="org/t")
    assert "got none" in str(err.value)


def test_a_mistyped_model_folder_fails_before_any_model_is_loaded(tmp_path, monkeypatch, no_remote_hosts):
    from hf_specdecpp.training import data, make_data

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the mistyped folder was reported")

    monkeypatch.setattr(data, "load_model", no_loading)
    monkeypatch.chdir(tmp_path)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    with pytest.raises(FileNotFoundError, match=r"No such model folder: \./models/drfat"), \
            pytest.warns(UserWarning, match="no dev split"):
        make_data(tmp_path / "d", draft="./models/drfat", target="org/target", prompts_file=prompts,
                  show_progress=False)
    r = _invoke("make-data", tmp_path / "d", "--draft", "./models/drfat", "--target", "org/target",
                "--prompts", prompts)
    assert r.exit_code == 1 and "No such model folder: ./models/drfat" in r.output
    assert "Repo id must" not in r.output


@pytest.mark.parametrize("args", [
    ["train", "{tmp}/no-data", "{tmp}/head"],
    ["make-data", "{tmp}/d", "--draft", "./typo", "--target", "org/t", "--prompts", "{tmp}/p.jsonl"],
    ["make-data", "{tmp}/d", "--draft", "org/d", "--target", "org/t", "--prompts", "{tmp}/missing.jsonl"],
    ["make-data", "{tmp}/d", "--draft", "org/d", "--target", "org/t", "--prompts", "{tmp}/p.jsonl", "--dtype", "fp8"],
    ["calibrate", "{tmp}/no-head", "{tmp}"],
    ["push", "{tmp}/no-head", "org/head"],
])
def test_bad_arguments_are_reported_before_torch_is_imported(tmp_path, args):
    (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n')
    script = ("import sys\nfrom typer.testing import CliRunner\nfrom hf_specdecpp.cli import app\n"
              "r = CliRunner().invoke(app, sys.argv[1:])\n"
              "print('EXIT', r.exit_code, 'TORCH', 'torch' in sys.modules)\nprint(r.output)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script, *(a.format(tmp=tmp_path) for a in args)], env=env,
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "TORCH False" in out.stdout, out.stdout
    assert "EXIT 0" not in out.stdout


def test_push_to_an_unreachable_endpoint_is_one_clear_error(tmp_path):
    from hf_specdecpp.training import TrainingError, push_head

    AcceptanceHead(hidden_size=8, num_layers=1).save_pretrained(tmp_path / "head")
    with pytest.raises(TrainingError, match=r"Could not push to 'me/head' at http://127\.0\.0\.1:9.*--local-dir"):
        push_head(tmp_path / "head", "me/head", endpoint="http://127.0.0.1:9", token="hf_dummy")
    r = _invoke("push", tmp_path / "head", "me/head", "--endpoint", "http://127.0.0.1:9", "--token", "hf_dummy")
    assert r.exit_code == 1 and "Could not push" in r.output
