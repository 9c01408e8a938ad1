"""Wall-clock timing that waits for the device: one harness for every measurement in the package."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device | str | None) -> None:
    """Wait until queued work on `device` has finished (a no-op on CPU)."""
    if device is None:
        return
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "xpu" and hasattr(torch, "xpu"):
        torch.xpu.synchronize(device)
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.synchronize()


def timed(fn: Callable[[], object], device: torch.device | str | None) -> tuple[object, float]:
    """Run `fn` once between two device synchronisations; return its result and the seconds it took."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def median_seconds(fn: Callable[[], object], device: torch.device | str | None, repeats: int, warmup: int = 1) -> float:
    """Median of `repeats` synchronised timings of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device)[1] for _ in range(repeats))
