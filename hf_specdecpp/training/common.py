"""Shared helpers of the training commands: errors, argument checks, model loading and ids, fingerprints,
progress bars, and the `[train]` extra's lazy imports."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..utils.extras import require
from ..utils.folders import local_folder


MIN_DEV_RESPONSES = 16
"""Fewer dev responses than this cannot support calibration: the best epoch, the AUROC and the chosen threshold
then rest on a handful of tokens (8 prompts made a 1-prompt, 7-token dev split and a head slower than the target)."""


class TrainingError(Exception):
    """An expected failure (bad input, mismatched models or settings); the CLI prints it without a traceback.

    Args:
        message (`str`): what failed, naming the file, argument or model, and often how to fix it.
    """


def train_extra(module: str, feature: str = "training a head") -> ModuleType:
    """Import a dependency of the `[train]` extra, or raise MissingExtraError naming `pip install
    "hf-specdecpp[train]"`."""
    return require(module, "train", feature)


def require_train_extras(feature: str, *modules: str) -> None:
    """Check up front that a command's `[train]` dependencies are installed (not after an hour of work)."""
    for module in modules:
        train_extra(module, feature)


def checked(*checks: Callable[[], object]) -> None:
    """Run argument checks (`core.validation.check_*` calls); their ValueError becomes a TrainingError."""
    try:
        for check in checks:
            check()
    except ValueError as err:
        raise TrainingError(str(err)) from None


def local_model_id(model_id: str | os.PathLike) -> str:
    """A model id as recorded: a local folder as its absolute path (so `./m` and `/work/m` are one model), a Hub
    id unchanged."""
    text = os.fspath(model_id)
    return os.path.abspath(text) if os.path.isdir(text) else text


def same_model_id(a: str | None, b: str | None) -> bool:
    """Whether two recorded ids name the same model: equal, one local folder spelled two ways, or a local copy
    of a Hub repo and that repo's id (see `hub_repo_id`)."""
    if a is None or b is None:
        return a == b
    if a == b:
        return True
    if os.path.isdir(a) and os.path.isdir(b):
        return os.path.realpath(a) == os.path.realpath(b)
    return hub_repo_id(a) == b or hub_repo_id(b) == a


def hub_repo_id(model_id: str | os.PathLike | None) -> str | None:
    """The Hub repo id a local model folder is a copy of, where that is known, so that heads and their model
    cards name `org/name` rather than a folder that exists only on this machine.

    Known copies: a huggingface_hub cache snapshot (`.../models--org--name/snapshots/<commit>`) and a model that
    `hf-specdecpp fetch-models` fetched (its completion marker names the repo or the model). Returns None for
    anything else, a Hub id included.

    Args:
        model_id: a recorded model id (a Hub id or an absolute local path).
    """
    if model_id is None or not os.path.isdir(model_id):
        return None
    parts = Path(os.path.realpath(model_id)).parts
    for i, part in enumerate(parts[:-2]):
        if part.startswith("models--") and parts[i + 1] == "snapshots" and "--" in part[len("models--"):]:
            return part[len("models--"):].replace("--", "/", 1)
    from ..assets import fetched_repo_id

    return fetched_repo_id(model_id)


def check_declared_ids(meta: dict, declared: dict[str, str | None], where: str) -> None:
    """Refuse ids declared for a head (draft/target) that are not the models the data set `where` was made with."""
    for role, value in declared.items():
        if value is not None and not same_model_id(local_model_id(value), meta[role]["id"]):
            raise TrainingError(f"The head is declared for {role} {value!r} but the data set {where} was made with "
                                f"{role} {meta[role]['id']!r}.")


def pick_device(device: str | None = None) -> torch.device:
    if device:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise TrainingError(f"Unknown device {device!r} ({err}); use cpu, cuda, cuda:1, mps, ...") from None
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        from ..core.device import default_dtype

        return default_dtype(device)
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise TrainingError(f"Unknown dtype {dtype!r}; choose one of {sorted(names)} or 'auto'")
    return names[dtype]


def model_id_of(model) -> str:
    name = str(getattr(model.config, "_name_or_path", "") or getattr(model, "name_or_path", "") or "")
    return local_model_id(name) if name else "<in-memory model>"


def check_model_ids(*models: Any) -> None:
    """Refuse, before any model is loaded, a model id that names a missing local folder or a file (instead of
    sending it to the Hub as a repo id, after the other model was loaded). Loaded models pass."""
    for model in models:
        if isinstance(model, (str, os.PathLike)):
            local_folder(model, "model")


def load_model(model_id: str, device: torch.device, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    check_model_ids(model_id)
    model_id = local_model_id(model_id)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype)
    except (OSError, ValueError) as err:
        raise TrainingError(f"Could not load model {model_id!r}: {err}") from err
    if device.type == "cpu" and dtype == torch.float32:
        from ..core.cpu_linear import use_fast_cpu_linear

        use_fast_cpu_linear(model)  # few-row products (batched decoding, verification) run 2-3x faster
    return model.to(device).eval()


def load_tokenizer(model_id: str):
    from transformers import AutoTokenizer

    model_id = local_model_id(model_id)
    try:
        return AutoTokenizer.from_pretrained(model_id)
    except (OSError, ValueError) as err:
        raise TrainingError(f"Could not load the tokenizer of {model_id!r}: {err}") from err


def model_fingerprint(model) -> dict[str, Any]:
    """Identify a model: its id, Hub commit, config digest and a digest of a sample of its weights.

    The weight sample is canonicalised to bfloat16, so the same checkpoint loaded in float32 or bfloat16 (CPU or
    GPU) gives the same fingerprint.
    """
    config = model.config.to_dict()
    for key in ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash", "architectures",
                "use_cache", "attn_implementation", "_attn_implementation", "_attn_implementation_autoset"):
        config.pop(key, None)
    config_sha = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    weights = hashlib.sha256()
    params = list(model.named_parameters())
    step = max(1, len(params) // 8)
    for name, param in params[::step]:
        sample = param.detach().reshape(-1)[:256].to("cpu", torch.bfloat16).view(torch.int16)
        weights.update(name.encode())
        weights.update(str(tuple(param.shape)).encode())
        weights.update(sample.numpy().tobytes())
    return {
        "id": model_id_of(model),
        "commit": getattr(model.config, "_commit_hash", None),
        "config_sha": config_sha,
        "weights_sha": weights.hexdigest()[:16],
    }


def progress(iterable=None, total=None, desc: str = "", disable: bool = False, unit: str = "it"):
    """A tqdm progress bar (rich-styled when `tqdm.rich` is usable) for a long step."""
    train_extra("tqdm", "progress bars of the training commands")
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=disable, unit=unit, dynamic_ncols=True, leave=False)


@contextlib.contextmanager
def step(description: str, show: bool = True):
    """Say on stderr what a long step without a progress bar of its own is doing (loading a model, simulating):
    a spinner on a terminal, one line in a log, and how long it took."""
    if not show:
        yield
        return
    from rich.console import Console
    from rich.markup import escape

    console, started = Console(stderr=True, soft_wrap=True), time.perf_counter()
    if console.is_terminal:
        with console.status(escape(description) + " ..."):
            yield
    else:
        console.print(escape(description) + " ...", highlight=False)
        yield
    console.print(f"{escape(description)}: done in {time.perf_counter() - started:.1f} s", highlight=False)


def warn_small_dev_split(num_dev: int, where: str, stacklevel: int = 3) -> None:
    """Warn when a dev split is too small to choose the best epoch or calibrate the threshold.

    Args:
        num_dev: the responses (prompts) in the dev split.
        where: the data set or the step, for the message.
        stacklevel: as for `warnings.warn`, counted from the caller of this function plus one (the default
            points at the caller's caller: the user's call of make_data, train_head or calibrate_head).
    """
    if num_dev >= MIN_DEV_RESPONSES:
        return
    what = "no dev split" if num_dev == 0 else f"a dev split of only {num_dev} response{'s' * (num_dev != 1)}"
    warnings.warn(f"{where} has {what}: train picks the best epoch and calibrate the threshold on it, so with fewer "
                  f"than {MIN_DEV_RESPONSES} the metrics (AUROC) and the threshold are noise and the head may make "
                  "generation slower than the target alone. Use more prompts or a larger --dev-fraction.",
                  UserWarning, stacklevel=stacklevel)


@contextlib.contextmanager
def quiet_datasets():
    """Silence datasets' own per-save progress bars inside our progress bars."""
    datasets = train_extra("datasets")
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()

