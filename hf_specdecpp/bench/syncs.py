"""What a GPU would wait on in the decoding loops, counted on any device.

On a GPU two kinds of calls stall the host until the queued kernels have run:

- reads of device values on the host (`.item()`, `.tolist()`, `bool(tensor)`, `.cpu()`, `nonzero`, a boolean
  index, ...);
- blocking copies of host data to the device: `torch.tensor(list, device=cuda)`, a factory called without a
  device (it builds on the host) whose result is then moved, `.to(cuda)` of a CPU tensor without pinned memory.

On a CPU-only machine the second kind cannot be seen as a copy, so `SyncCounter` counts its source instead: every
tensor built from host data (`torch.tensor`, `torch.as_tensor`, `Tensor.new_tensor`, `torch.from_numpy`) and
every tensor factory called without a device, plus (on a GPU) every `.to()`/`.cuda()`/`.copy_()` that moves a
CPU tensor to another device without `non_blocking`. Host integers sent through `core.device.to_device` (pinned
memory, non-blocking copy on a GPU) are counted apart as "staged": a GPU does not wait on them. Only calls made by this package's own code are counted (a model's own internals
are not ours to change); the test suite holds the loops to a budget with it (`tests/test_host_syncs.py`) and the
benchmarks report it (`benchmarks/scaling.py`, `benchmarks/gpu_check.py`).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

PACKAGE = str(Path(__file__).resolve().parents[1])
READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__,
         torch.Tensor.__float__, torch.Tensor.__index__, torch.Tensor.cpu, torch.Tensor.numpy, torch.nonzero,
         torch.Tensor.nonzero, torch.argwhere, torch.unique, torch.masked_select, torch.Tensor.masked_select}
HOST_DATA = {torch.tensor, torch.as_tensor, torch.Tensor.new_tensor, torch.from_numpy}
FACTORIES = {torch.arange, torch.zeros, torch.ones, torch.full, torch.empty, torch.rand, torch.randn,
             torch.randint, torch.linspace, torch.eye}
STAGING = "core/device.py"
"""`hf_specdecpp.core.device.to_device`: pinned memory and a non-blocking copy on a GPU ("staged": no sync)."""
MOVES = {torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.copy_}
def _is_cpu(device) -> bool:
    return device is None or torch.device(device).type == "cpu"


def classify(func, args, kwargs) -> str | None:
    """"read" (a device value read on the host), "upload" (host data turned into a tensor / moved to a device)
    or None for a call a GPU would not wait on."""
    if func in READS:
        return "read"
    if func is torch.Tensor.__getitem__ and len(args) > 1:  # a boolean mask index has a data-dependent size
        index = args[1]
        return "read" if isinstance(index, torch.Tensor) and index.dtype == torch.bool else None
    if func in HOST_DATA:
        return "upload"
    if func in FACTORIES:
        return "upload" if kwargs.get("device") is None else None
    if func in MOVES and args and isinstance(args[0], torch.Tensor) and args[0].device.type == "cpu":
        if kwargs.get("non_blocking") or (len(args) > 2 and args[2] is True and func is torch.Tensor.copy_):
            return None
        if func is torch.Tensor.cuda:
            return "upload"
        if func is torch.Tensor.copy_:
            return "upload" if len(args) > 1 and isinstance(args[1], torch.Tensor) and args[1].device.type != "cpu" \
                else None
        target = kwargs.get("device")
        target = target if target is not None else next(
            (a for a in args[1:] if isinstance(a, (str, torch.device)) or (isinstance(a, torch.Tensor))), None)
        if isinstance(target, torch.Tensor):
            target = target.device
        return "upload" if target is not None and not _is_cpu(target) else None
    return None


class SyncCounter(TorchFunctionMode):
    """Counts, while active, the calls a GPU would wait on (see the module docstring) made by this package's code.

    `places` lists them as `file:line caller function kind` (file relative to the package, `caller` the
    package function that made the call).
    """

    def __init__(self, package: str = PACKAGE):
        super().__init__()
        self.package = package
        self.places: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = classify(func, args, kwargs)
        if kind is not None:
            caller = sys._getframe(1)
            while caller is not None and "/torch/" in caller.f_code.co_filename:
                caller = caller.f_back
            if caller is not None and caller.f_code.co_filename.startswith(self.package):
                name = caller.f_code.co_filename[len(self.package) + 1:]
                if kind == "upload" and (name, caller.f_code.co_name) == (STAGING, "to_device"):
                    kind = "staged"
                self.places.append(f"{name}:{caller.f_lineno} {caller.f_code.co_name} {func.__name__} {kind}")
        return func(*args, **kwargs)

    @property
    def syncs(self) -> list[str]:
        """The counted calls a GPU waits on: reads and blocking uploads (not staged copies)."""
        return [p for p in self.places if not p.endswith(" staged")]

    def summary(self) -> dict[str, int]:
        """Counts by kind: `read`, `upload` (blocking), `staged` (queued, no sync) and `syncs` (read + upload)."""
        kinds = Counter(p.rsplit(" ", 1)[1] for p in self.places)
        return {"read": kinds["read"], "upload": kinds["upload"], "staged": kinds["staged"],
                "syncs": kinds["read"] + kinds["upload"]}
