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


