"""Issue 14 for the training commands: a user's files are never lost, and damaged or wrong inputs are refused
with one clear message naming the file or option (never trained on silently, never a traceback)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hf_specdecpp.cli import app
from hf_specdecpp.head import AcceptanceHead
from hf_specdecpp.training import TrainingError, calibrate_head, export_head, load_features, make_data, train_head
from hf_specdecpp.utils.extras import MissingExtraError
from hf_specdecpp.utils.io import FileFormatError, sha256_file

from helpers import training_workspace

MAX_NEW = 16


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    target, draft, prompts = training_workspace(root)
    data = root / "data"
    make_data(data, **_kw({"target": target, "draft": draft, "prompts": prompts}))
    head = root / "head"
    train_head(data, head, epochs=1, batch_size=4, num_layers=1, show_progress=False)
    return {"root": root, "target": target, "draft": draft, "prompts": prompts, "data": data, "head": head}


def _kw(ws, **over):
    kw = dict(draft=ws["draft"], target=ws["target"], prompts_file=ws["prompts"], max_new_tokens=MAX_NEW,
              shard_size=8, batch_size=8, dev_fraction=0.25, show_progress=False)
    kw.update(over)
    return kw


def _train_kw(**over):
    return {"epochs": 3, "batch_size": 4, "num_layers": 1, "lr": 3e-3, "show_progress": False, **over}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _invoke(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


# ---------------------------------------------------------------------------------------------- make-data --overwrite
def test_overwrite_refuses_a_folder_that_make_data_did_not_write(ws, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "metadata.json").write_text('{"my": "own metadata"}')
    (folder / "notes.txt").write_text("precious")
    before = _snapshot(folder)
    with pytest.raises(TrainingError, match="marker"):
        make_data(folder, **_kw(ws, overwrite=True))
    assert _snapshot(folder) == before
    r = _invoke("make-data", folder, "--draft", ws["draft"], "--target", ws["target"], "--prompts", ws["prompts"],
                "--overwrite")
    assert r.exit_code == 1 and "marker" in r.output
    assert _snapshot(folder) == before


def test_overwrite_deletes_only_what_make_data_wrote(ws, tmp_path):
    folder = _copy(ws["data"], tmp_path / "data")
    (folder / "notes.txt").write_text("precious")
    (folder / "analysis").mkdir()
    (folder / "analysis" / "plot.png").write_bytes(b"png")
    (folder / "shards" / "my-readme.txt").write_text("also mine")
    make_data(folder, **_kw(ws, overwrite=True, mix_ratio=0.5, max_prompts=8))
    assert (folder / "notes.txt").read_text() == "precious"
    assert (folder / "analysis" / "plot.png").read_bytes() == b"png"
    assert (folder / "shards" / "my-readme.txt").read_text() == "also mine"
    assert json.loads((folder / "metadata.json").read_text())["mix_ratio"] == 0.5
    assert len(load_features(folder, "train")) + len(load_features(folder, "dev")) == 8
    assert not (folder / "shards" / "train-00001").exists()  # the old data set's shards are gone


def test_resume_refuses_a_folder_without_the_marker(ws, tmp_path):
    folder = _copy(ws["data"], tmp_path / "data")
    (folder / ".hf_specdecpp_data.json").unlink()
    before = _snapshot(folder)
    with pytest.raises(TrainingError, match="marker"):
        make_data(folder, **_kw(ws))
    assert _snapshot(folder) == before


# ---------------------------------------------------------------------------------------------- train / push folders
def test_train_refuses_a_folder_holding_another_models_config(ws, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    before = _snapshot(folder)
    with pytest.raises(TrainingError, match="not an acceptance-head config"):
        train_head(ws["data"], folder, **_train_kw(epochs=1))
    assert _snapshot(folder) == before  # refused before any work: no checkpoint either
    r = _invoke("train", ws["data"], folder, "--epochs", "1")
    assert r.exit_code == 1 and "not an acceptance-head config" in r.output
    assert _snapshot(folder) == before


def test_train_keeps_a_readme_written_by_hand(ws, tmp_path):
    folder = tmp_path / "head"
    folder.mkdir()
    (folder / "README.md").write_text("# my notes about this head\n")
    train_head(ws["data"], folder, **_train_kw(epochs=1))
    assert (folder / "README.md").read_text() == "# my notes about this head\n"
    assert AcceptanceHead.from_pretrained(str(folder)).num_layers == 1


def test_train_refuses_a_checkpoint_folder_it_did_not_write(ws, tmp_path):
    folder = tmp_path / "head"
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "checkpoint" / "mine.pt").write_bytes(b"x")
    with pytest.raises(TrainingError, match="did not write"):
        train_head(ws["data"], folder, **_train_kw(epochs=1))
    assert (folder / "checkpoint" / "mine.pt").read_bytes() == b"x"


def test_push_local_dir_keeps_a_users_readme_and_refuses_a_foreign_config(ws, tmp_path):
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "README.md").write_text("hand-written card\n")
    export_head(ws["head"], kept, repo_id="org/head")
    assert (kept / "README.md").read_text() == "hand-written card\n"
    assert (kept / "model.safetensors").is_file()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(TrainingError, match="not an acceptance-head config"):
        export_head(ws["head"], foreign)
    r = _invoke("push", ws["head"], "org/head", "--local-dir", foreign)
    assert r.exit_code == 1 and "not an acceptance-head config" in r.output
    assert (foreign / "config.json").read_text() == '{"model_type": "llama"}'
    assert sorted(p.name for p in foreign.iterdir()) == ["config.json"]


def test_calibrate_refuses_to_overwrite_a_users_plot(ws, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "calibration.png").write_bytes(b"my plot")
    with pytest.raises(TrainingError, match="calibration.png"):
        calibrate_head(ws["head"], ws["data"], output_dir=folder, cost_ratio=0.1, show_progress=False)
    assert (folder / "calibration.png").read_bytes() == b"my plot"


# ---------------------------------------------------------------------------------------------- checkpoints
def _fail_second_optimizer_save(monkeypatch):
    """Make the second epoch's checkpoint save fail after the model weights were written (a kill mid-save)."""
    from hf_specdecpp.training import checkpoint

    real_save, calls = checkpoint.save_file, []

    def save(tensors, filename, *args, **kwargs):
        if str(filename).endswith("optimizer.safetensors"):
            calls.append(filename)
            if len(calls) == 2:
                raise RuntimeError("killed inside the checkpoint save")
        return real_save(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", save)


def test_a_run_killed_inside_the_checkpoint_save_resumes_from_the_last_complete_epoch(ws, tmp_path, monkeypatch):
    out = tmp_path / "head"
    with monkeypatch.context() as m:
        _fail_second_optimizer_save(m)
        with pytest.raises(RuntimeError, match="killed"):
            train_head(ws["data"], out, **_train_kw())
    state = train_head(ws["data"], out, resume=True, **_train_kw())
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
    ref = train_head(ws["data"], tmp_path / "straight", **_train_kw())
    resumed, straight = (AcceptanceHead.from_pretrained(str(p)) for p in (out, tmp_path / "straight"))
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)
    assert state["history"] == ref["history"]
    assert not [p for p in (out / "checkpoint").iterdir() if p.name.startswith(".tmp")]


def _interrupted_run(ws, out: Path) -> None:
    def stop(epoch, metrics):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_head(ws["data"], out, on_epoch_end=stop, **_train_kw())


@pytest.mark.parametrize("victim", ["optimizer.safetensors", "optimizer.json", "scheduler.json", "model.safetensors",
                                    "trainer_state.json"])
def test_resume_refuses_a_damaged_checkpoint(ws, tmp_path, victim):
    out = tmp_path / "head"
    _interrupted_run(ws, out)
    [path] = [p for p in (out / "checkpoint").rglob(victim)]
    _flip_byte(path)
    with pytest.raises(TrainingError, match=f"damaged.*|{victim}") as err:
        train_head(ws["data"], out, resume=True, **_train_kw())
    assert victim in str(err.value) and "damaged" in str(err.value)
    r = _invoke("train", ws["data"], out, "--resume", "--epochs", "3", "--batch-size", "4", "--num-layers", "1",
                "--lr", "3e-3")
    assert r.exit_code == 1 and victim in r.output


def test_resume_names_a_corrupt_checkpoint_manifest(ws, tmp_path):
    out = tmp_path / "head"
    _interrupted_run(ws, out)
    (out / "checkpoint" / "manifest.json").write_text("{not json")
    with pytest.raises(TrainingError, match="manifest.json"):
        train_head(ws["data"], out, resume=True, **_train_kw())


def test_an_interrupted_train_leaves_no_head_that_looks_finished(ws, tmp_path):
    out = tmp_path / "head"
    _interrupted_run(ws, out)
    assert not (out / "config.json").exists() and not (out / "model.safetensors").exists()
    with pytest.raises(OSError, match="unfinished `train` run.*--resume"):
        AcceptanceHead.from_pretrained(out)
    state = train_head(ws["data"], out, resume=True, **_train_kw())
    head = AcceptanceHead.from_pretrained(out)
    assert len(head.training_info["history"]) == 3 == len(state["history"])
    assert head.training_info["best_epoch"] == state["best"]["epoch"]


def test_resume_without_the_manifest_refuses_and_deletes_nothing(ws, tmp_path):
    out = tmp_path / "head"
    _interrupted_run(ws, out)
    (out / "checkpoint" / "manifest.json").unlink()
    before = _snapshot(out)
    with pytest.raises(TrainingError, match="epoch-00001.*no manifest.json") as err:
        train_head(ws["data"], out, resume=True, **_train_kw())
    assert "nothing in it is deleted" in str(err.value)
    with pytest.raises(TrainingError, match="already holds a training run"):
        train_head(ws["data"], out, **_train_kw())
    assert _snapshot(out) == before


def test_temporary_manifests_of_killed_saves_are_cleaned_up(ws, tmp_path):
    out = tmp_path / "head"
    _interrupted_run(ws, out)
    stale = out / "checkpoint" / ".manifest.json.99999.tmp"
    stale.write_text("{")
    train_head(ws["data"], out, resume=True, **_train_kw())
    assert not stale.exists()
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["epoch-00003", "manifest.json"]


class _Marker:
    """Unpickling this creates the file `path`: a stand-in for code run by a crafted pickle."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("version", [2, 1])
def test_resume_never_unpickles_a_crafted_checkpoint(ws, tmp_path, version):
    out = tmp_path / "head"
    _interrupted_run(ws, out)
    manifest_path = out / "checkpoint" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    folder = out / "checkpoint" / manifest["folder"]
    marker = tmp_path / "code-ran"
    name = "custom_checkpoint_0.pkl"  # where accelerate kept the scheduler, loaded with weights_only=False
    torch.save(_Marker(marker), folder / name)
    manifest["files"][name] = sha256_file(folder / name)
    manifest["version"] = version
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(TrainingError, match="custom_checkpoint_0.pkl|pickle"):
        train_head(ws["data"], out, resume=True, **_train_kw())
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- corrupt data
def _arrow_file(data: Path, name: str) -> Path:
    [path] = (data / "shards" / name).glob("*.arrow")
    return path


def _rewrite_shard(data: Path, name: str, change) -> None:
    """Replace a shard by a modified copy and record the new files' checksums: a consistent but wrong shard
    (what a buggy writer or a hand edit would leave)."""
    import datasets

    shard = data / "shards" / name
    ds = datasets.load_from_disk(str(shard))
    rows = ds.to_list()
    change(rows)
    tmp = data / "tmp-shard"
    datasets.Dataset.from_list(rows, features=ds.features).save_to_disk(str(tmp))
    del ds
    shutil.rmtree(shard)
    shutil.move(str(tmp), str(shard))
    manifest = json.loads((data / "progress.json").read_text())
    entry = manifest["shards"][str(int(name.split("-")[1]))]
    entry["files"] = {k: v for k, v in entry.get("files", {}).items() if not k.startswith(name + "/")}
    entry["files"].update({f"{name}/{p.name}": sha256_file(p) for p in shard.iterdir()})
    (data / "progress.json").write_text(json.dumps(manifest))


def test_flipped_bytes_in_a_shard_are_refused_naming_the_shard(ws, tmp_path):
    data = _copy(ws["data"], tmp_path / "data")
    _flip_byte(_arrow_file(data, "train-00001"), offset=-200)
    with pytest.raises(TrainingError, match="train-00001.*damaged"):
        load_features(data, "train")
    with pytest.raises(TrainingError, match="train-00001"):
        train_head(data, tmp_path / "head", **_train_kw(epochs=1))
    assert not (tmp_path / "head").exists()
    r = _invoke("train", data, tmp_path / "head2")
    assert r.exit_code == 1 and "train-00001" in r.output


@pytest.mark.parametrize("change,message", [
    (lambda rows: rows[0]["labels"].__setitem__(0, 7.0), "outside \\[0, 1\\]"),
    (lambda rows: rows[1]["context_labels"].__setitem__(0, -0.5), "outside \\[0, 1\\]"),
    (lambda rows: rows[0]["hidden"][0].__setitem__(3, float("nan")), "NaN"),
    (lambda rows: rows[0]["context_features"][0].__setitem__(1, float("inf")), "NaN or infinite"),
    (lambda rows: rows[0]["labels"].append(1.0), "inconsistent"),
    (lambda rows: rows[0].__setitem__("context_hidden", rows[0]["context_hidden"][:-1]), "inconsistent"),
])
def test_wrong_values_in_a_consistent_shard_are_refused_naming_the_shard(ws, tmp_path, change, message):
    data = _copy(ws["data"], tmp_path / "data")
    _rewrite_shard(data, "train-00000", change)
    with pytest.raises(TrainingError, match=f"train-00000.*{message}"):
        train_head(data, tmp_path / "head", **_train_kw(epochs=1))


def test_make_data_resume_checks_the_finished_shards(ws, tmp_path):
    out = tmp_path / "data"

    def stop(shard):
        if shard == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_data(out, **_kw(ws), on_shard_done=stop)
    _flip_byte(_arrow_file(out, "train-00000"), offset=-200)
    before = _snapshot(out)
    with pytest.raises(TrainingError, match="train-00000.*damaged"):
        make_data(out, **_kw(ws))
    assert _snapshot(out) == before


# ---------------------------------------------------------------------------------------------- JSON files
@pytest.mark.parametrize("name,content,message", [
    ("metadata.json", "{broken", "metadata.json is not valid JSON"),
    ("progress.json", "[1, 2]", "progress.json must hold a JSON object"),
    ("metadata.json", None, "hidden_size must be an integer"),
    ("progress.json", None, "shards must be an object"),
])
def test_corrupt_or_mistyped_json_names_the_file(ws, tmp_path, name, content, message):
    data = _copy(ws["data"], tmp_path / "data")
    if content is None:  # valid JSON, wrong types
        obj = json.loads((data / name).read_text())
        obj.update({"hidden_size": "32"} if name == "metadata.json" else {"shards": [0]})
        content = json.dumps(obj)
    (data / name).write_text(content)
    with pytest.raises(FileFormatError, match=message):
        train_head(data, tmp_path / "head", **_train_kw(epochs=1))
    r = _invoke("train", data, tmp_path / "head")
    assert r.exit_code == 1 and name in r.output


def test_non_utf8_prompts_file_names_the_file_and_line(ws, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"prompt": "w7 w8"}\n{"prompt": "w9 \xff\xfe"}\n')
    with pytest.raises(TrainingError, match=r"p\.jsonl, line 2: not UTF-8"):
        make_data(tmp_path / "d", **_kw(ws, prompts_file=path))
    assert not (tmp_path / "d").exists()
    r = _invoke("make-data", tmp_path / "d", "--draft", ws["draft"], "--target", ws["target"], "--prompts", path)
    assert r.exit_code == 1 and "line 2" in r.output


# ---------------------------------------------------------------------------------------------- options
DATA_ARGS = ("--draft", "D", "--target", "T", "--prompts", "P")


@pytest.mark.parametrize("command,option,value", [
    ("calibrate", "--cost-ratio", "-1"), ("calibrate", "--cost-ratio", "0"), ("calibrate", "--verify-slope", "-0.1"),
    ("calibrate", "--max-candidates", "0"), ("calibrate", "--max-candidates", "1000"),
    ("calibrate", "--min-candidates", "0"), ("calibrate", "--num-draws", "0"), ("calibrate", "--repeats", "0"),
    ("calibrate", "--cap-tolerance", "-1"), ("calibrate", "--seed", "-1"),
    ("train", "--warmup-ratio", "5"), ("train", "--lr", "0"), ("train", "--lr", "nan"), ("train", "--epochs", "0"),
    ("train", "--batch-size", "0"), ("train", "--num-layers", "-1"), ("train", "--weight-decay", "-1"),
    ("train", "--w-reject", "0"), ("train", "--w-accept", "inf"), ("train", "--feature-lr", "-1"),
    ("make-data", "--mix-ratio", "1.5"), ("make-data", "--dev-fraction", "1"), ("make-data", "--top-p", "0"),
    ("make-data", "--temperature", "-0.5"), ("make-data", "--top-k", "-1"), ("make-data", "--max-new-tokens", "0"),
    ("make-data", "--max-prompt-tokens", "0"), ("make-data", "--max-prompts", "0"), ("make-data", "--shard-size", "0"),
    ("make-data", "--batch-size", "0"), ("make-data", "--seed", "-3"),
])
def test_numeric_options_are_checked_at_the_edge(tmp_path, command, option, value):
    out = tmp_path / "out"
    positional = {"calibrate": (tmp_path / "head", tmp_path / "data"), "train": (tmp_path / "data", out),
                  "make-data": (out, *DATA_ARGS)}[command]
    r = _invoke(command, *positional, option, value)
    assert r.exit_code == 2 and f"Invalid value for '{option}'" in r.output, r.output
    assert not out.exists()


@pytest.mark.parametrize("kwargs,name", [({"warmup_ratio": 5}, "warmup_ratio"), ({"lr": float("nan")}, "lr"),
                                         ({"epochs": 0}, "epochs"), ({"w_reject": -1}, "w_reject")])
def test_train_arguments_are_checked(ws, tmp_path, kwargs, name):
    with pytest.raises(TrainingError, match=name):
        train_head(ws["data"], tmp_path / "head", **{**_train_kw(), **kwargs})
    assert not (tmp_path / "head").exists()


@pytest.mark.parametrize("kwargs,name", [({"cost_ratio": -1}, "cost_ratio"), ({"verify_slope": -1}, "verify_slope"),
                                         ({"max_candidates": 0}, "max_candidates"), ({"num_draws": 0}, "num_draws")])
def test_calibrate_arguments_are_checked(ws, tmp_path, kwargs, name):
    with pytest.raises(TrainingError, match=name):
        calibrate_head(ws["head"], ws["data"], output_dir=tmp_path / "cal", show_progress=False,
                       **{"cost_ratio": 0.1, **kwargs})
    assert not (tmp_path / "cal").exists()


@pytest.mark.parametrize("kwargs,name", [({"mix_ratio": 1.5}, "mix_ratio"), ({"top_p": 0.0}, "top_p"),
                                         ({"seed": -1}, "seed"), ({"max_prompts": 0}, "max_prompts")])
def test_make_data_arguments_are_checked(ws, tmp_path, kwargs, name):
    with pytest.raises(TrainingError, match=name):
        make_data(tmp_path / "d", **_kw(ws, **kwargs))
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------------------------------------- paths and context
def test_the_same_models_by_another_path_spelling_resume(ws, tmp_path, monkeypatch):
    models = ws["root"] / "models"
    monkeypatch.chdir(models.parent)
    relative = {"draft": os.path.join("models", "draft"), "target": os.path.join(".", "models", "target")}
    out = tmp_path / "data"

    def stop(shard):
        if shard == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_data(out, **_kw(ws, **relative), on_shard_done=stop)
    make_data(out, **_kw(ws))  # absolute paths now: the same models, resumed
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["draft"]["id"] == ws["draft"] and meta["target"]["id"] == ws["target"]
    assert json.loads((out / "progress.json").read_text())["complete"]
    head = tmp_path / "head"
    train_head(out, head, draft_model_id=relative["draft"], target_model_id=relative["target"],
               **_train_kw(epochs=1))
    assert AcceptanceHead.from_pretrained(str(head)).draft_model_id == ws["draft"]


def test_prompts_longer_than_the_context_are_cut_with_a_warning(ws, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target, draft = (AutoModelForCausalLM.from_pretrained(ws[r]) for r in ("target", "draft"))
    for model in (target, draft):
        model.config.max_position_embeddings = MAX_NEW + 6  # room for 6 prompt tokens; the prompts have 3-12
    tokenizer = AutoTokenizer.from_pretrained(ws["target"])
    kw = _kw(ws, target=target, draft=draft, tokenizer=tokenizer, max_prompts=8)
    with pytest.warns(UserWarning, match="prompts were cut to their last 6 tokens"):
        make_data(tmp_path / "d", **kw)
    manifest = json.loads((tmp_path / "d" / "progress.json").read_text())
    assert 0 < manifest["totals"]["context_cut"] < 8
    prompt_lengths = list(load_features(tmp_path / "d", "train")["prompt_length"])
    assert max(prompt_lengths) <= 6
    with pytest.raises(TrainingError, match="leaves no room for a prompt"):
        make_data(tmp_path / "d2", **{**kw, "max_new_tokens": MAX_NEW + 6})
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*were cut")  # the full context: nothing cut, no warning
        warnings.filterwarnings("ignore", message=".*dev split")  # 8 prompts: the small-dev warning is expected
        make_data(tmp_path / "d3", **_kw(ws, max_prompts=8))


# ---------------------------------------------------------------------------------------------- tiny data, summaries
def test_a_dev_split_too_small_for_calibration_is_warned_about(ws, tmp_path):
    with pytest.warns(UserWarning, match="dev split of only 2 responses.*--dev-fraction"):
        make_data(tmp_path / "d", **_kw(ws, max_prompts=8))
    with pytest.warns(UserWarning, match="dev split of only 6 responses"):
        calibrate_head(ws["head"], ws["data"], output_dir=tmp_path / "c", cost_ratio=0.1, plot=False,
                       show_progress=False)
    with pytest.warns(UserWarning, match="no dev split"):
        make_data(tmp_path / "nodev", **_kw(ws, max_prompts=8, dev_fraction=0.0))


def test_cli_prints_a_short_summary_with_warnings_and_json_on_request(ws, tmp_path):
    args = ["make-data", tmp_path / "d", "--draft", ws["draft"], "--target", ws["target"], "--prompts", ws["prompts"],
            "--max-new-tokens", MAX_NEW, "--max-prompts", 8, "--shard-size", 8, "--dev-fraction", 0.25]
    r = _invoke(*args)
    assert r.exit_code == 0, r.output
    assert "Warning: The data set in" in r.output and "dev split of only 2 responses" in r.output
    assert "Data set written to" in r.output and "6 train and 2 dev responses" in r.output
    assert "{" not in r.output  # no JSON blob
    r = _invoke(*args, "--json")
    assert r.exit_code == 0, r.output
    blob = r.output[r.output.index("{"):]
    assert json.loads(blob)["dev"] == 2
    r = _invoke("calibrate", ws["head"], ws["data"], "--output-dir", tmp_path / "c", "--cost-ratio", "0.1")
    assert r.exit_code == 0, r.output
    assert "Calibrated head written to" in r.output and "Simulated on 6 dev responses" in r.output


# ---------------------------------------------------------------------------------------------- the [train] extra
@pytest.mark.parametrize("module,call", [
    ("accelerate", lambda ws, tmp: train_head(ws["data"], tmp / "h", **_train_kw(epochs=1))),
    ("sklearn", lambda ws, tmp: train_head(ws["data"], tmp / "h", **_train_kw(epochs=1))),
    ("datasets", lambda ws, tmp: make_data(tmp / "d", **_kw(ws))),
    ("datasets", lambda ws, tmp: load_features(ws["data"], "train")),
    ("tqdm", lambda ws, tmp: make_data(tmp / "d", **_kw(ws))),
    ("matplotlib", lambda ws, tmp: calibrate_head(ws["head"], ws["data"], output_dir=tmp / "c", cost_ratio=0.1,
                                                  show_progress=False)),
])
def test_a_missing_train_extra_names_the_pip_command(ws, tmp_path, monkeypatch, module, call):
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import module` now raises ImportError
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtraError, match=r'pip install "hf-specdecpp\[train\]"'):
        call(ws, tmp_path)
    assert not any((tmp_path / name).exists() for name in ("h", "d", "c"))


def test_an_interrupted_cli_train_says_how_to_resume_and_leaves_no_head(ws, tmp_path, monkeypatch):
    from hf_specdecpp.training import train as train_module

    real_print_epoch = train_module.print_epoch

    def interrupt_after_the_first_epoch(metrics):
        real_print_epoch(metrics)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "print_epoch", interrupt_after_the_first_epoch)
    r = _invoke("train", ws["data"], tmp_path / "head", "--epochs", "200", "--batch-size", "4", "--num-layers", "1")
    assert r.exit_code == 130
    assert "Interrupted; no head was written yet; add --resume" in r.output
    assert not (tmp_path / "head" / "config.json").exists() and (tmp_path / "head" / "checkpoint").is_dir()
