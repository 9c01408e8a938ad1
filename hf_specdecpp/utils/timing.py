"""Wall-clock timing that waits for the device: one harness for every measurement in the package."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


Where = torch.device | str | torch.nn.Module | None


def synchronize(where: Where) -> None:
    """Wait until queued work has finished on a device, or on every device a model's parameters are on (a model
    sharded with `device_map="auto"` spans several); a no-op on CPU."""
    if where is None:
        return
    if isinstance(where, torch.nn.Module):
        for device in {p.device for p in where.parameters()}:
            synchronize(device)
        return
    device = torch.device(where)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "xpu" and hasattr(torch, "xpu"):
        torch.xpu.synchronize(device)
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.synchronize()


def timed(fn: Callable[[], object], device: Where) -> tuple[object, float]:
    """Run `fn` once between two device synchronisations; return its result and the seconds it took."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def median_seconds(fn: Callable[[], object], device: Where, repeats: int, warmup: int = 1) -> float:
    """Median of `repeats` synchronised timings of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device)[1] for _ in range(repeats))
