"""What a draft step and a verification pass cost on this machine, measured interleaved.

Costs are in units of one target decode step (a forward pass over 1 new token with a KV cache):
`c` = draft decode step / target decode step, and `v(K)` = the target pass over K + 1 new tokens (verifying K
candidates) / target decode step. `v` is not linear everywhere (on CPUs it is flat up to a few tokens and
then steps up; on GPUs it stays near 1 far longer), so the measured table is kept and interpolated.

The passes are the loops' own (`ModelSession.forward`, with the draft's hidden states and one kept logit
row) and are timed interleaved: every repeat times the draft step and then every K once, so a burst of load
on a shared machine spreads over all points instead of shifting a whole block of one K. Every timing waits
for the device (`utils.timing`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..utils.io import read_json_object
from ..utils.timing import timed
from .device import DeviceKind
from .drafting import ModelSession

VERIFY_KS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 20)
"""Candidate counts K whose verification pass is timed by default; v(K) is interpolated between them."""


@dataclass
class CostCurve:
    """Measured seconds and the normalised costs derived from them.

    Args:
        draft_step_s (`float`):
            Seconds of one draft decode step (a pass over 1 new token with a KV cache).
        target_step_s (`float`):
            Seconds of one target decode step (the unit all costs are expressed in).
        verify_s (`dict[int, float]`):
            Seconds of the target pass over K + 1 new tokens (verifying K candidates), by K.
        device (`dict[str, str]`, *optional*, defaults to `{}`):
            The `DeviceKind` fields of the machine measured (as `dataclasses.asdict` gives them).
        prompt_length (`int`, *optional*, defaults to 0):
            Tokens in the cache before the timed passes.
        repeats (`int`, *optional*, defaults to 0):
            Timed repeats behind each median.
    """

    draft_step_s: float
    target_step_s: float
    verify_s: dict[int, float]
    device: dict[str, str] = field(default_factory=dict)
    prompt_length: int = 0
    repeats: int = 0

    @property
    def c_draft(self) -> float:
        """Draft step / target step (the cost ratio c).

        Returns:
            `float`: `draft_step_s / target_step_s`.
        """
        return self.draft_step_s / self.target_step_s

    @property
    def verify_cost(self) -> dict[int, float]:
        """v(K) = verify pass over K candidates / target step, at the measured K.

        Returns:
            `dict[int, float]`: v(K) by K, in increasing K.
        """
        return {k: t / self.target_step_s for k, t in sorted(self.verify_s.items())}

    @property
    def verify_slope(self) -> float:
        """The per-candidate slope of a linear fit of v (for reports and for extrapolating past the largest K).

        Returns:
            `float`: the least-squares slope, clamped at 0; 0.0 with fewer than two measured K.
        """
        ks = sorted(self.verify_s)
        if len(ks) < 2:
            return 0.0
        slope, _ = np.polyfit(np.array(ks, dtype=np.float64), np.array([self.verify_cost[k] for k in ks]), 1)
        return max(float(slope), 0.0)

    def table(self, max_candidates: int) -> np.ndarray:
        """v(K) for K = 0..max_candidates (see `verify_cost_table`).

        Args:
            max_candidates (`int`):
                The largest K in the table.

        Returns:
            `np.ndarray` of shape `(max_candidates + 1,)`: v(K) in target steps (float64).
        """
        return verify_cost_table(max_candidates, self.verify_cost, self.verify_slope)

    def to_dict(self) -> dict[str, Any]:
        """The curve as a JSON-ready dict.

        Returns:
            `dict[str, Any]`: the fields (`verify_s` keyed by strings) plus the derived `c_draft`, `verify_cost`
            (keyed by strings) and `verify_slope`.
        """
        out = asdict(self)
        out["verify_s"] = {str(k): v for k, v in sorted(self.verify_s.items())}
        out.update(c_draft=self.c_draft, verify_cost={str(k): v for k, v in self.verify_cost.items()},
                   verify_slope=self.verify_slope)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CostCurve":
        """A curve from `to_dict`'s form (derived entries are ignored).

        Args:
            data (`dict[str, Any]`):
                Needs `draft_step_s`, `target_step_s` and `verify_s` (keys convertible to int); `device`,
                `prompt_length` and `repeats` are optional.

        Returns:
            `CostCurve`: the curve, its numbers converted to `float`/`int`.

        Raises:
            KeyError: a required entry is missing.
        """
        return cls(float(data["draft_step_s"]), float(data["target_step_s"]),
                   {int(k): float(v) for k, v in data["verify_s"].items()}, dict(data.get("device") or {}),
                   int(data.get("prompt_length", 0)), int(data.get("repeats", 0)))


def cost_curve_from_json(data: dict[str, Any]) -> CostCurve:
    """A cost curve from saved JSON: `{"costs": {...}, "machine": ...}` (`benchmarks/measure_costs.py`, an exact
    run's `costs.json`) or the bare `CostCurve.to_dict` form.

    Args:
        data (`dict[str, Any]`):
            The parsed JSON object; its `"costs"` entry is read when there is one, else the object itself.

    Returns:
        `CostCurve`: the curve (see `CostCurve.from_dict`).
    """
    return CostCurve.from_dict(data["costs"] if "costs" in data else data)


def load_cost_curve(path) -> CostCurve:
    """`cost_curve_from_json` of the JSON file at `path` (a file error names the file).

    Args:
        path (`str` or `os.PathLike`):
            The JSON file.

    Returns:
        `CostCurve`: the curve it holds.

    Raises:
        FileNotFoundError: the file does not exist.
        FileFormatError: (`hf_specdecpp.utils.io`) the file is not UTF-8 JSON holding one object.
    """
    return cost_curve_from_json(read_json_object(path, "cost curve"))


def verify_cost_table(max_candidates: int, verify_cost: dict | None = None, verify_slope: float = 0.0) -> np.ndarray:
    """v(K) for K = 0..max_candidates: measured points interpolated (extrapolated with `verify_slope` beyond the
    largest measured K), or `1 + verify_slope * K` without measurements.

    Args:
        max_candidates (`int`):
            The largest K in the table.
        verify_cost (`dict`, *optional*):
            Measured v(K) by K (keys and values are converted with `int`/`float`); below the smallest measured K
            the first value is used. None or empty: no measurements.
        verify_slope (`float`, *optional*, defaults to 0.0):
            The per-candidate slope used past the largest measured K, or for the whole table without measurements.

    Returns:
        `np.ndarray` of shape `(max_candidates + 1,)`: v(K) in target steps (float64).
    """
    ks = np.arange(max_candidates + 1, dtype=np.float64)
    if not verify_cost:
        return 1.0 + verify_slope * ks
    points = sorted((int(k), float(v)) for k, v in verify_cost.items())
    xs, ys = np.array([p[0] for p in points], dtype=np.float64), np.array([p[1] for p in points])
    table = np.interp(ks, xs, ys)
    beyond = ks > xs[-1]
    table[beyond] = ys[-1] + verify_slope * (ks[beyond] - xs[-1])
    return table


class _Timer:
    """A prefilled session of one model, and timed passes over `n` new tokens that are dropped again."""

    def __init__(self, model: torch.nn.Module, role: str, prompt_length: int, generator: torch.Generator,
                 hidden: bool):
        self.session = ModelSession(model, role, 1)
        self.vocab = model.config.get_text_config().vocab_size
        self.generator = generator
        self.hidden = hidden
        prompt = torch.randint(2, self.vocab, (1, prompt_length), generator=generator)
        self.session.forward(prompt, torch.arange(prompt_length)[None].to(self.session.device), None, 1, hidden)
        self.length = prompt_length

    def __call__(self, new_tokens: int) -> float:
        ids = torch.randint(2, self.vocab, (1, new_tokens), generator=self.generator)
        positions = (self.length + torch.arange(new_tokens))[None].to(self.session.device)
        keep = 1 if self.hidden else new_tokens
        _, seconds = timed(lambda: self.session.forward(ids, positions, None, keep, self.hidden), self.session.model)
        self.session.truncate([self.length])  # drop the timed tokens again
        return seconds


@torch.no_grad()
def measure_costs(draft: torch.nn.Module, target: torch.nn.Module, *, prompt_length: int = 128,
                  ks: tuple[int, ...] = VERIFY_KS, repeats: int = 10, warmup: int = 2, seed: int = 0,
                  on_repeat: Callable[[int], None] | None = None) -> CostCurve:
    """Median times (after `warmup` untimed repeats) of one draft step and target passes over K + 1 tokens.

    Args:
        draft (`torch.nn.Module`):
            The draft model (timed as the loops run it: with hidden states and one kept logit row).
        target (`torch.nn.Module`):
            The target model (timed keeping the logits of every new token).
        prompt_length (`int`, *optional*, defaults to 128):
            Random tokens prefilled into each model's cache before the timed passes.
        ks (`tuple[int, ...]`, *optional*, defaults to `VERIFY_KS`):
            The candidate counts K whose verification pass is timed.
        repeats (`int`, *optional*, defaults to 10):
            Timed repeats per point.
        warmup (`int`, *optional*, defaults to 2):
            Untimed repeats first.
        seed (`int`, *optional*, defaults to 0):
            Seed of the random token ids.
        on_repeat (`Callable[[int], None]`, *optional*):
            Called after every repeat (warmup included) with its 0-based index, e.g. for progress.

    Returns:
        `CostCurve`: the medians; the target step is the K = 0 pass, or without K = 0 in `ks` a 1-token pass from
        a linear fit of the measured ones. `device` describes the draft's device (`DeviceKind.of`).
    """
    generator = torch.Generator().manual_seed(seed)
    draft_timer = _Timer(draft, "draft", prompt_length, generator, hidden=True)
    target_timer = _Timer(target, "target", prompt_length, generator, hidden=False)
    draft_times: list[float] = []
    verify_times: dict[int, list[float]] = {k: [] for k in ks}
    for repeat in range(warmup + repeats):
        draft_times.append(draft_timer(1))
        for k in ks:
            verify_times[k].append(target_timer(k + 1))
        if on_repeat is not None:
            on_repeat(repeat)
    verify = {k: statistics.median(v[warmup:]) for k, v in verify_times.items()}
    if 0 in verify:
        step = verify[0]
    else:  # a 1-token pass from a linear fit of the measured ones
        slope, intercept = np.polyfit(np.array([k + 1 for k in ks], float), np.array([verify[k] for k in ks]), 1)
        step = float(intercept + slope)
    return CostCurve(statistics.median(draft_times[warmup:]), step, verify, asdict(DeviceKind.of(draft)),
                     prompt_length, repeats)
