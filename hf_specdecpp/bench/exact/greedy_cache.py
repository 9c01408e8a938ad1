"""A file of the target's greedy outputs per prompt, shared by exact runs: producing them is most of a prompt's
recording time, and they do not change when only the compared configurations (heads, thresholds) do."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ...utils.io import read_json_object, write_json


def greedy_key(target: torch.nn.Module, input_ids: torch.Tensor, max_new_tokens: int) -> str:
    """What a greedy output depends on: the target (its name, dtype, device type and CPU linear variant), the
    prompt's token ids and the length limit."""
    param = next(target.parameters())
    linear = "few-row" if any(type(m).__name__ == "FewRowLinear" for m in target.modules()) else "linear"
    name = str(getattr(target.config, "_name_or_path", "") or type(target).__name__)
    prompt = hashlib.sha256(input_ids.cpu().numpy().tobytes()).hexdigest()[:16]
    return f"{name}|{param.dtype}|{param.device.type}|{linear}|{prompt}|{max_new_tokens}"


class GreedyCache:
    """`{key: token ids}` in one JSON file (written atomically after each new entry)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.entries: dict[str, list[int]] = {}
        if self.path.is_file():
            data = read_json_object(self.path, "greedy-output cache")
            self.entries = {str(k): [int(t) for t in v] for k, v in data.get("outputs", {}).items()}

    def get(self, key: str) -> list[int] | None:
        return self.entries.get(key)

    def put(self, key: str, tokens: list[int]) -> None:
        self.entries[key] = list(tokens)
        write_json(self.path, {"outputs": self.entries})
