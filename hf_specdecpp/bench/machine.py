"""Which machine a result comes from: CPU kind, device, dtype, threads and library versions (saved with results)."""

from __future__ import annotations

import torch

from ..core.device import DeviceKind, cpu_name


def machine_info(model: torch.nn.Module) -> dict:
    """The machine `model` runs on: CPU (model name and the flags that change matmul costs), device, dtype,
    torch threads, and the torch and transformers versions."""
    import transformers

    kind = DeviceKind.of(model)
    return {"cpu": cpu_name(), "device": kind.describe(), "device_type": kind.device_type, "dtype": kind.dtype,
            "threads": torch.get_num_threads(), "torch": torch.__version__, "transformers": transformers.__version__}


def machine_line(info: dict) -> str:
    """One line for tables: `cpu ...; device ...; N threads; torch X, transformers Y`."""
    return (f"CPU {info['cpu']}; device {info['device']}; {info['threads']} torch threads; "
            f"torch {info['torch']}, transformers {info['transformers']}")
