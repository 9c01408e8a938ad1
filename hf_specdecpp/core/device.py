"""What kind of device a model runs on: costs (and so calibrated policies) are only valid on the same kind."""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

import torch


@functools.lru_cache(maxsize=None)
def cpu_name() -> str:
    """The CPU model with the instruction-set extensions that change matmul costs (e.g. `[avx512_bf16 amx]`)."""
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
    """What a cost measurement depends on: device type and model, dtype, and the CPU linear-layer variant."""

    device_type: str
    device_name: str
    dtype: str
    linear: str = "nn.Linear"

    @classmethod
    def of(cls, model: torch.nn.Module) -> "DeviceKind":
        """The kind of device `model`'s parameters are on."""
        param = next(model.parameters())
        device = param.device
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
        elif device.type == "cpu":
            name = cpu_name()
        else:
            name = device.type
        linear = "FewRowLinear" if any(type(m).__name__ == "FewRowLinear" for m in model.modules()) else "nn.Linear"
        return cls(device.type, name, str(param.dtype).removeprefix("torch."), linear)

    def key(self) -> str:
        """A file-name-safe key (for per-device policy caches)."""
        text = f"{self.device_type}-{self.device_name}-{self.dtype}-{self.linear}"
        return "".join(c if c.isalnum() or c in "-._" else "_" for c in text)

    def describe(self) -> str:
        extra = f", {self.linear}" if self.device_type == "cpu" else ""
        return f"{self.device_type} ({self.device_name}), {self.dtype}{extra}"




def cpu_has_native_bf16(name: str) -> bool:
    """Whether the CPU `cpu_name()` described as `name` computes bfloat16 matmuls natively (AVX512-BF16 or AMX):
    there bf16 is faster than float32; on AVX2-only CPUs bf16 is emulated and slower."""
    flags = name.rpartition("[")[2]
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_bf16_cpu() -> bool:
    """Whether this machine's CPU computes bfloat16 natively (see `cpu_has_native_bf16`)."""
    return cpu_has_native_bf16(cpu_name())


def default_dtype(device: torch.device | str) -> torch.dtype:
    """The dtype to load models in when the user does not say: bfloat16 on a GPU that supports it and on CPUs
    with native bf16, float32 elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if native_bf16_cpu() else torch.float32
    return torch.float32
