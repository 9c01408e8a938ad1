"""make-data's prompt sources: a JSONL file, a `datasets` dataset, or records given in Python.

Every malformed input raises a TrainingError naming the file and line (or the dataset row).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import TrainingError, local_model_id, train_extra


@dataclass
class PromptRecord:
    """One training example: a plain prompt or chat messages, and optionally the dataset's answer.

    Args:
        prompt (`str`, *optional*, defaults to `None`): a plain-text prompt (used when `messages` is `None`).
        messages (`list[dict]`, *optional*, defaults to `None`): chat messages `[{"role": ..., "content": ...}]`;
            a final assistant message is the answer when `response` is `None`.
        response (`str`, *optional*, defaults to `None`): the dataset's answer (needed by `responses="dataset"`).
    """

    prompt: str | None = None
    messages: list[dict] | None = None
    response: str | None = None


_ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
                 "model": "assistant", "system": "system"}


def normalise_messages(messages: Any, where: str) -> list[dict]:
    """Chat messages as `[{role, content}]` (ShareGPT `from`/`value` and role aliases accepted)."""
    if not isinstance(messages, list) or not messages:
        raise TrainingError(f"{where}: `messages` must be a non-empty list of {{role, content}} objects")
    out = []
    for m in messages:
        if not isinstance(m, dict):
            raise TrainingError(f"{where}: every message must be an object with `role` and `content`")
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if not isinstance(role, str) or not isinstance(content, str):
            raise TrainingError(f"{where}: every message needs string `role` and `content` "
                                "(or ShareGPT `from`/`value`)")
        out.append({"role": _ROLE_ALIASES.get(role.lower(), role), "content": content})
    return out


def record_from_mapping(obj: Any, where: str, prompt_field: str, response_field: str | None) -> PromptRecord:
    """A PromptRecord from one JSON object / dataset row: a string prompt or a chat `messages` list."""
    if not isinstance(obj, dict):
        raise TrainingError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    response = None
    if response_field is not None and obj.get(response_field) is not None:
        response = obj[response_field]
        if not isinstance(response, str):
            raise TrainingError(f"{where}: field {response_field!r} must be a string")
    value = obj.get(prompt_field)
    if value is None:
        for alt in ("messages", "conversations"):
            if obj.get(alt) is not None:
                value = obj[alt]
                break
    if isinstance(value, str):
        return PromptRecord(prompt=value, response=response)
    if isinstance(value, list):
        return PromptRecord(messages=normalise_messages(value, where), response=response)
    raise TrainingError(
        f"{where}: no usable prompt: expected a string field {prompt_field!r} or a chat `messages` list"
    )


def read_jsonl_prompts(path: str | os.PathLike, prompt_field: str = "prompt",
                       response_field: str | None = "response") -> list[PromptRecord]:
    """Prompts from a JSONL file: one object per line with `prompt` (string) or chat `messages`.

    Errors name the file and the 1-based line number of the malformed line (bad JSON, not UTF-8, wrong types).

    Args:
        path (`str` or `os.PathLike`): the JSONL file; blank lines are skipped.
        prompt_field (`str`, *optional*, defaults to `"prompt"`): the field of the prompt (a string, or a chat list);
            without it, a `messages` or `conversations` list (ShareGPT `from`/`value` accepted).
        response_field (`str`, *optional*, defaults to `"response"`): the field of the dataset's answer, if any
            (`None`: read no answers).

    Returns:
        `list[PromptRecord]`: the records, in file order.

    Raises:
        TrainingError: the file is missing, holds no prompts, or a line is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"Prompt file not found: {path}")
    records = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}, line {lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise TrainingError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start} of the line)") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise TrainingError(f"{where}: malformed JSON ({err.msg})") from None
            records.append(record_from_mapping(obj, where, prompt_field, response_field))
    if not records:
        raise TrainingError(f"No prompts in {path}")
    return records


def load_dataset_prompts(name: str, config: str | None = None, split: str = "train", prompt_column: str = "prompt",
                         response_column: str | None = None,
                         limit: int | None = None) -> tuple[list[PromptRecord], str]:
    """Prompts from a `datasets` dataset (Hub name, local path, or a `save_to_disk` folder); returns (records, id)."""
    datasets = train_extra("datasets", "make-data")
    saved = Path(name)
    try:
        saved_names = ("dataset_info.json", "state.json", "dataset_dict.json")
        if saved.is_dir() and any((saved / f).exists() for f in saved_names):
            ds = datasets.load_from_disk(name)
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split]
        else:
            ds = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # datasets raises many types for missing/unreadable data
        raise TrainingError(f"Could not load dataset {name!r} (config {config!r}, split {split!r}): {err}") from err
    for column in (prompt_column, response_column):
        if column is not None and column not in ds.column_names:
            raise TrainingError(f"Dataset {name!r} has no column {column!r}; columns: {ds.column_names}")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    records = [record_from_mapping(row, f"{name} row {i}", prompt_column, response_column) for i, row in enumerate(ds)]
    return records, f"{local_model_id(name)}:{config}:{split}:{getattr(ds, '_fingerprint', '')}"


def read_prompt_source(prompts_file, dataset, records, *, dataset_config, dataset_split, prompt_column,
                       response_column, max_prompts) -> tuple[list[PromptRecord], dict]:
    """The prompts of exactly one source, cut to `max_prompts`, and the source's description for the metadata
    (with a digest of the prompts, so a resumed run is known to read the same ones)."""
    if sum(x is not None for x in (prompts_file, dataset, records)) != 1:
        given = [name for name, x in (("--prompts / prompts_file", prompts_file), ("--dataset / dataset", dataset),
                                      ("records (Python only)", records)) if x is not None]
        raise TrainingError("Give exactly one prompt source: --prompts FILE.jsonl or --dataset NAME (from Python: "
                            f"prompts_file, dataset or records); got {' and '.join(given) if given else 'none'}")
    if prompts_file is not None:
        recs = read_jsonl_prompts(prompts_file, prompt_field=prompt_column,
                                  response_field=response_column or "response")
        source = {"kind": "jsonl", "path": os.path.abspath(prompts_file)}
    elif dataset is not None:
        recs, ds_id = load_dataset_prompts(dataset, dataset_config, dataset_split, prompt_column, response_column,
                                           limit=max_prompts)
        source = {"kind": "dataset", "id": ds_id, "prompt_column": prompt_column, "response_column": response_column}
    else:
        recs = list(records)
        if not all(isinstance(r, PromptRecord) for r in recs):
            raise TrainingError("records must be a list of PromptRecord")
        source = {"kind": "records"}
    if max_prompts is not None:
        recs = recs[:max_prompts]
    if not recs:
        raise TrainingError("No prompts to process")
    source["digest"] = source_digest(recs)
    source["num_prompts"] = len(recs)
    return recs, source


def source_digest(records: list[PromptRecord]) -> str:
    """A short digest of the prompts' content (prompt, messages, response)."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r.prompt, r.messages, r.response], sort_keys=True).encode())
    return h.hexdigest()[:16]
