"""SpecDec++ as a Hub `custom_generate` method: the function a Hub repo's `custom_generate/generate.py` exposes.

transformers loads decoding methods from Hub repos (`generate(..., custom_generate="org/repo",
trust_remote_code=True)`): it checks the repo's `custom_generate/requirements.txt`, imports its
`custom_generate/generate.py` and calls that module's `generate(model=..., **generate_arguments)` with every
argument of the user's `generate()` call, extra ones included. The repo template (`hub_repo/`, pushed by
`push_method` / `hf-specdecpp push-method`) imports `generate` from here, so the method's code ships with the
package and the repo holds no code of its own to go stale.

The extra arguments are the ones a user would pass to our method objects: `draft_model` (or `assistant_model`),
`head`, `method` and `method_kwargs`; drafts and heads may be objects or Hub ids / local folders.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).with_name("hub_repo")
"""The Hub repo template: README.md (with the `custom_generate` tag) and `custom_generate/`."""

DEFAULT_RULE = ("entropy", {"estimator": "top1", "stop_rule": "cost-aware"})
"""The method used without a head: the training-free cost-aware rule on the draft's top-1 probability, with the
assumed costs (issue 26: level with or ahead of SVIP at h = 0.3 on every cell measured; README, Benchmarks)."""

_LOADED: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def generate(model: Any, *args: Any, draft_model: Any = None, assistant_model: Any = None, head: Any = None,
             method: Any = None, method_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Speculative decoding of `model` (the target) with a draft, as generate() would decode alone.

    Args:
        model (`PreTrainedModel`): the target model (transformers passes it).
        draft_model (`PreTrainedModel` or `str`, *optional*): the draft, or its Hub id / local folder (loaded once
            per process in the target's dtype, on the target's device). `assistant_model` is accepted instead.
        head (`AcceptanceHead` or `str`, *optional*): the acceptance head for SpecDec++, its Hub id / folder, or
            `"auto"`: the Hub's head for this pair (`AcceptanceHead.for_pair`, by the models' Hub ids).
        method (`str` or `DecodingMethod`, *optional*): a registered method name (`"specdec++"`, `"entropy"`,
            `"fixed-k"`, `"gammatune"`, `"dyspec"`) or a method object; default SpecDec++ with a head, otherwise
            the training-free cost-aware rule (`DEFAULT_RULE`).
        method_kwargs (`dict`, *optional*): options for the method's constructor (e.g. `{"threshold": 0.3}`).
        **kwargs: every other argument of `generate()`, passed on unchanged.

    Returns:
        What `generate()` returns (ids, or an output object with `speculation_stats`).
    """
    from transformers.generation.utils import GenerationMixin

    from .. import install

    install()
    draft_source = draft_model if draft_model is not None else assistant_model
    if draft_source is None:
        raise ValueError("The SpecDec++ Hub method needs a draft model: pass `draft_model=` (a model, a Hub id or a "
                         "local folder) to generate().")
    draft = _load_draft(draft_source, model)
    streamer = kwargs.pop("streamer", None)
    pair = (_model_id(draft_source, draft), _model_id(None, model))
    decoding = _build_method(method, method_kwargs or {}, _load_head(head, pair), streamer)
    return GenerationMixin.generate(model, *args, assistant_model=draft, candidate_generator=decoding, **kwargs)


def _build_method(method: Any, options: dict[str, Any], head: Any, streamer: Any) -> Any:
    from ..methods import registry

    if method is not None and not isinstance(method, str):
        if registry.entry_for(method) is None:
            raise TypeError(f"method must be a registered method name or an hf_specdecpp method object, got "
                            f"{type(method).__name__}")
        if options or head is not None:
            raise ValueError("Pass either a method object or method=/method_kwargs=/head=, not both.")
        return method
    if method is None:
        name, defaults = ("specdec++", {}) if head is not None else DEFAULT_RULE
        options = {**defaults, **options}
    else:
        name = method
    if name not in registry.names():
        raise ValueError(f"method={name!r} is not a decoding method; choose one of {', '.join(registry.names())}.")
    if head is not None:
        if name not in ("specdec++", "dyspec"):
            raise ValueError(f"head= is used by SpecDec++ and DySpec, not by method={name!r}.")
        options["head"] = head
    elif name == "specdec++" and "head" not in options:
        raise ValueError("method='specdec++' needs an acceptance head: pass head= (an AcceptanceHead, a Hub id or a "
                         "local folder), or leave method unset for the training-free cost-aware rule.")
    return registry.build(name, streamer=streamer, **options)


def _load_draft(source: Any, target: Any) -> Any:
    if not isinstance(source, (str, os.PathLike)):
        return source
    from transformers import AutoModelForCausalLM

    return _once(("draft", str(source), target.dtype, str(target.device)),
                 lambda: AutoModelForCausalLM.from_pretrained(source, dtype=target.dtype).to(target.device).eval())


def _once(key: tuple, load: Any) -> Any:
    """`load()`'s result, loaded once per process for `key` (drafts and heads given by id or folder)."""
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = load()
        return _LOADED[key]


def _model_id(source: Any, model: Any) -> str | None:
    """The Hub id a model was loaded from, when known (`source` if it is one, else the model's own record)."""
    from ..head.discovery import is_repo_id

    for name in (source, getattr(getattr(model, "config", None), "_name_or_path", None)):
        if is_repo_id(name):
            return name
    return None


def _load_head(source: Any, pair: tuple[str | None, str | None]) -> Any:
    """The head object for `head=`: as given, loaded from a Hub id / folder, or found for the pair (`"auto"`);
    refused when it records another pair of Hub ids than the models in use."""
    from ..head import AcceptanceHead

    if source is None:
        return None
    if source == "auto":
        if None in pair:
            raise ValueError("head='auto' finds a head by the Hub ids of the draft and the target: load both from "
                             "the Hub (or pass draft_model as a Hub id), or pass head= explicitly.")
        return _once(("head-for", *pair), lambda: AcceptanceHead.for_pair(*pair))
    if isinstance(source, (str, os.PathLike)):
        head = _once(("head", str(source)), lambda: AcceptanceHead.from_pretrained(source))
    else:
        head = source
    if None not in pair:
        head.check_pair(*pair, where=str(source) if isinstance(source, (str, os.PathLike)) else None)
    return head


def write_method_repo(folder: str | os.PathLike) -> Path:
    """Copy the Hub method repo (README.md, `custom_generate/`) into `folder`, which must not exist yet.

    Args:
        folder: where to write the repo.

    Returns:
        The folder's path.
    """
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} exists already; write the method repo into a new folder.")
    shutil.copytree(TEMPLATE, folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return folder


def push_method(repo_id: str, private: bool = False, token: str | None = None) -> Any:
    """Publish the method on the Hub as a `custom_generate` repo (`model.generate(custom_generate=repo_id)`).

    A new repo gets the README and `custom_generate/`; an existing repo (e.g. a model repo that should carry the
    method) gets `custom_generate/` only: its README and other files are left as they are.

    Args:
        repo_id: `namespace/name` of the repo (created if missing).
        private: create the repo private.
        token: a Hub token (default: the logged-in user's).

    Returns:
        The `CommitInfo` of the upload.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    exists = api.repo_exists(repo_id)
    if not exists:
        api.create_repo(repo_id, private=private)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_method_repo(Path(tmp) / "repo")
        if exists:
            (folder / "README.md").unlink()
        return api.upload_folder(repo_id=repo_id, folder_path=folder,
                                 commit_message="Add the SpecDec++ custom_generate method (hf-specdecpp)")
