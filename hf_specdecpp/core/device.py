"""Devices: where a model's inputs and outputs live, host data sent without a sync, and the kind of device a
model runs on (costs, and so calibrated policies, are only valid on the same kind).

A model dispatched by accelerate (`device_map=`, offloading) may have its first parameter on another device or
on the meta device; its inputs go where its input embedding runs (the hook's execution device) and its outputs
come back where its output layer runs. Reading `next(model.parameters()).device` is wrong for such models.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

import torch


def _execution_device(module: torch.nn.Module | None) -> torch.device | None:
    """Where `module` computes: its accelerate hook's execution device, else its first real parameter's device."""
    if module is None:
        return None
    hook = getattr(module, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    if device is not None:
        return torch.device(device if not isinstance(device, int) else f"cuda:{device}")
    for param in module.parameters():
        if param.device.type != "meta":
            return param.device
    return None


def input_device(model: torch.nn.Module) -> torch.device:
    """The device a model's input ids go to: its input embedding's (execution) device, as transformers places
    the inputs of a dispatched model; the top-level hook's or the first real parameter's device otherwise.

    Args:
        model (`torch.nn.Module`):
            A transformers model (plain, or dispatched by accelerate).

    Returns:
        `torch.device`: the device on which the model's first computation runs (the CPU when no hook and no
        real parameter say otherwise).
    """
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return _execution_device(embeddings) or _execution_device(model) or torch.device("cpu")


def to_device(values: list[int] | list[list[int]], device: torch.device, dtype: torch.dtype = torch.long
              ) -> torch.Tensor:
    """Host integers as a tensor on `device` without a host synchronisation.

    A blocking copy of pageable host memory to a GPU waits for the stream; a copy from pinned memory with
    `non_blocking=True` is queued instead (the caching host allocator keeps the pinned block alive until the copy
    has run). On the CPU this is `torch.tensor`. The loops send the host-known integers of a round (lengths,
    kept positions, tree indices) through here only, so that `hf_specdecpp.bench.syncs` can tell them apart.

    Args:
        values (`list[int]` or `list[list[int]]`):
            Integers (nested lists for 2D) known on the host.
        device (`torch.device` or `str`):
            Where the tensor is needed.
        dtype (`torch.dtype`, *optional*, defaults to `torch.long`):
            The tensor's dtype.

    Returns:
        `torch.Tensor` of shape `(N,)` or `(B, T)`: the tensor on `device` (its copy possibly still in flight,
        ordered before later work on the stream).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return torch.tensor(values, dtype=dtype, device=device)
    return torch.tensor(values, dtype=dtype, pin_memory=True).to(device, non_blocking=True)


@functools.lru_cache(maxsize=None)
def cpu_name() -> str:
    """The CPU model with the instruction-set extensions that change matmul costs (e.g. `[avx512_bf16 amx]`).

    Returns:
        `str`: the `model name` of `/proc/cpuinfo` (else `platform.processor()` or `platform.machine()`), followed
        by those of `avx2`, `avx512f`, `avx512_bf16`, `amx_bf16` it has in brackets when it has any. Computed once
        per process.
    """
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
            if name and flags:
                break
    except OSError:
        pass
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} [{' '.join(wanted)}]" if wanted else name


@dataclass(frozen=True)
class DeviceKind:
    """What a cost measurement depends on: device type and model, dtype, and the CPU linear-layer variant.

    Args:
        device_type (`str`):
            The torch device type (`"cuda"`, `"cpu"`, ...).
        device_name (`str`):
            The GPU's name, the CPU's `cpu_name()`, or the device type for other devices.
        dtype (`str`):
            The parameters' dtype without the `torch.` prefix (e.g. `"bfloat16"`).
        linear (`str`, *optional*, defaults to `"nn.Linear"`):
            The linear-layer variant: `"nn.Linear"` or `"FewRowLinear"` (`cpu_linear`).
    """

    device_type: str
    device_name: str
    dtype: str
    linear: str = "nn.Linear"

    @classmethod
    def of(cls, model: torch.nn.Module) -> "DeviceKind":
        """The kind of device `model`'s parameters are on.

        Args:
            model (`torch.nn.Module`):
                The model; its device is `input_device(model)`, its dtype its first floating-point parameter's.

        Returns:
            `DeviceKind`: the kind; `linear` is `"FewRowLinear"` when any submodule is one.
        """
        param = next(p for p in model.parameters() if p.is_floating_point())
        device = input_device(model)  # a dispatched model's first parameter may sit on the meta device
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
        elif device.type == "cpu":
            name = cpu_name()
        else:
            name = device.type
        linear = "FewRowLinear" if any(type(m).__name__ == "FewRowLinear" for m in model.modules()) else "nn.Linear"
        return cls(device.type, name, str(param.dtype).removeprefix("torch."), linear)

    def key(self) -> str:
        """A file-name-safe key (for per-device policy caches).

        Returns:
            `str`: the fields joined by `-`, every character other than letters, digits and `-._` replaced by `_`.
        """
        text = f"{self.device_type}-{self.device_name}-{self.dtype}-{self.linear}"
        return "".join(c if c.isalnum() or c in "-._" else "_" for c in text)

    def describe(self) -> str:
        """A one-line human-readable description (for reports).

        Returns:
            `str`: e.g. `cuda (NVIDIA H100), bfloat16`; on CPUs the linear-layer variant is appended.
        """
        extra = f", {self.linear}" if self.device_type == "cpu" else ""
        return f"{self.device_type} ({self.device_name}), {self.dtype}{extra}"




def cpu_has_native_bf16(name: str) -> bool:
    """Whether the CPU `cpu_name()` described as `name` computes bfloat16 matmuls natively (AVX512-BF16 or AMX):
    there bf16 is faster than float32; on AVX2-only CPUs bf16 is emulated and slower.

    Args:
        name (`str`):
            A CPU description as `cpu_name()` returns it (the flags in its last bracket are read).

    Returns:
        `bool`: whether the flags include `avx512_bf16` or `amx_bf16`.
    """
    flags = name.rpartition("[")[2]
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_bf16_cpu() -> bool:
    """Whether this machine's CPU computes bfloat16 natively (see `cpu_has_native_bf16`).

    Returns:
        `bool`: `cpu_has_native_bf16(cpu_name())`.
    """
    return cpu_has_native_bf16(cpu_name())


def default_dtype(device: torch.device | str) -> torch.dtype:
    """The dtype to load models in when the user does not say: bfloat16 on a GPU that supports it and on CPUs
    with native bf16, float16 on an older CUDA GPU, float32 on other CPUs.

    Args:
        device (`torch.device` or `str`):
            The device the models will run on.

    Returns:
        `torch.dtype`: on CUDA `torch.bfloat16` when the GPU supports it, else `torch.float16`; on the CPU
        `torch.bfloat16` with native bf16 (`native_bf16_cpu`), else `torch.float32`; `torch.float32` on other
        devices.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if native_bf16_cpu() else torch.float32
    return torch.float32
