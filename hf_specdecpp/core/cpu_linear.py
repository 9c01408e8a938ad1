"""Faster few-row linear layers for float32 inference on CPUs.

Speculative decoding's verification pass multiplies every weight matrix by a handful of rows (the K drafted
tokens plus one). On x86 CPUs PyTorch's `F.linear` (x @ W^T) takes a GEMM path for 2-16 rows that costs 2-4x a
one-row product, although all of them are bound by reading the weights once. Computing the same product as
`(W @ x^T)^T` streams W in its stored layout and costs about one row's time for up to 4 rows (on a 2-core
AVX2 CPU, a Qwen2.5-1.5B pass over 4 new tokens: 353 ms vs 1119 ms; `benchmarks/verify_cost.py`).

MKL's cost for this product is not monotonic in the row count: 4, 8 and 16 rows are fast shapes, 9-15 rows cost
up to 1.6x what 16 do. Rows are therefore padded with zeros up to the next size of `PAD_TO` (`padded_rows`);
the padding rows are computed and dropped, so results do not change.

`use_fast_cpu_linear(model)` swaps every `nn.Linear` of a model for a `FewRowLinear` that shares its weight and
bias. One-row products (ordinary decoding), GPU tensors and other dtypes keep `F.linear`, so target-alone
decoding is unchanged. Results equal `F.linear`'s up to float32 rounding (a different summation order), the
same kind of difference as any change of batching.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PAD_TO = (4, 5, 6, 8, 16)
"""Row counts the `(W x^T)^T` product is computed with: other counts up to 16 are padded with zeros to the next
one (a Qwen2.5-1.5B pass on a 2-core AVX2 CPU, 128 cached tokens: 2-4 rows ~500 ms, 5 rows 644 ms, 6 rows 785 ms
(less than padded to 8), 8 rows ~850-950 ms, 9-16 rows padded ~900 ms but unpadded up to 1414 ms); more than 16
rows are padded to a multiple of 8 (17 rows: 1226 ms padded vs 1560 ms)."""


def padded_rows(rows: int) -> int:
    """The row count the product is computed with for `rows` input rows (see `PAD_TO`); one row is not padded.

    Args:
        rows (`int`):
            The number of input rows.

    Returns:
        `int`: `rows` itself for 0 or 1 row; the next size in `PAD_TO` up to 16 rows; beyond that the next
        multiple of 8.
    """
    if rows <= 1:
        return rows
    for size in PAD_TO:
        if rows <= size:
            return size
    return -(-rows // 8) * 8


class FewRowLinear(nn.Module):
    """A linear layer computing `y = x W^T + b` as `(W x^T)^T` for multi-row float32 inputs on CPU.

    Args:
        linear (`nn.Linear`):
            The layer it replaces; its `weight` and `bias` Parameters are shared, not copied (tied weights stay
            tied, `state_dict` keys are unchanged).
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight  # shared Parameters: tied weights stay tied, state_dict keys are unchanged
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`F.linear(x, weight, bias)`, computed as `(W x^T)^T` with padded rows where that is faster.

        Args:
            x (`torch.Tensor` of shape `(..., in_features)`):
                The input; one row, a non-CPU device, or a dtype other than float32 (input or weight) takes
                `F.linear`.

        Returns:
            `torch.Tensor` of shape `(..., out_features)`: the layer's output.
        """
        rows = x.numel() // self.in_features if self.in_features else 0
        if rows <= 1 or x.device.type != "cpu" or x.dtype != torch.float32 or self.weight.dtype != torch.float32:
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(rows, self.in_features)
        padded = padded_rows(rows)
        if padded > rows:
            flat = torch.cat([flat, flat.new_zeros(padded - rows, self.in_features)])
        out = torch.mm(self.weight, flat.t()).t()[:rows].contiguous()
        if self.bias is not None:
            out += self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        """The layer's sizes for `repr()`, as `nn.Linear` shows them.

        Returns:
            `str`: `in_features=..., out_features=..., bias=...`.
        """
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def linear_layers(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    """Every plain `nn.Linear` of `model` as (parent module, attribute name, layer).

    Args:
        model (`nn.Module`):
            The model to search (all submodules).

    Returns:
        `list[tuple[nn.Module, str, nn.Linear]]`: the layers whose type is exactly `nn.Linear` (subclasses and
        `FewRowLinear` are left out), with their parent and attribute name.
    """
    return [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
            if type(child) is nn.Linear]


def use_fast_cpu_linear(model: nn.Module) -> int:
    """Replace every `nn.Linear` in `model` (in place) by a `FewRowLinear` sharing its parameters.

    Meant for float32 inference on CPU (training and other devices or dtypes fall back to `F.linear`).

    Args:
        model (`nn.Module`):
            The model, changed in place.

    Returns:
        `int`: the number of layers replaced; calling it again replaces nothing.
    """
    layers = linear_layers(model)
    for parent, name, linear in layers:
        setattr(parent, name, FewRowLinear(linear))
    return len(layers)
