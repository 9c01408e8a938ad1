"""Can a model read a token tree? A capability probe instead of a list of architectures.

Tree decoding feeds a model several branches in one pass with a 4D attention mask and per-token position ids
on top of a plain dynamic cache, and afterwards gathers cache positions. `check_tree_support` checks exactly
that on the model itself, once per model: sibling tokens read as a tree must give the logits each of them gets
when read alone after the prefix. Models whose cache keeps a sliding window or a recurrent state cannot be
gathered and are refused from their config.

The comparison tells a model that does not apply the mask or the positions (every sibling but the first then
reads other siblings, or sits at a later position: its logits move by a large part of their scale) from the
rounding of ordinary kernels (a one-pass tree and one-token passes add in other orders and blockings).
Measured on the real pair (dequantized Q4_K_M GGUF), torch 2.13.0+cpu, transformers 5.25, SDPA: 4 siblings after
a 5-token prefix, 4 random prompts, max |tree - alone| over the vocabulary and the siblings:

| machine | model | dtype | rounding | mask not applied | positions not applied |
|---|---|---|---|---|---|
| AMD EPYC (KVM, 2 vCPUs, avx512_bf16, no AMX) | Qwen2.5-Coder-0.5B | float32 | <= 3.4e-4 | >= 5.4 | >= 3.6 (31% of 11.7) |
| same | Qwen2.5-Coder-0.5B | bfloat16 | <= 0.29 (1.7% of 17.4) | >= 5.4 | >= 3.6 |
| same | Qwen2.5-Coder-1.5B | float32 | <= 3.3e-5 | >= 9.1 | >= 4.2 (logits <= 17.6) |
| same | Qwen2.5-Coder-1.5B | bfloat16 | <= 0.19 | >= 8.8 | >= 4.2 |
| same, `load_pair` (float32: FewRowLinear), this probe | draft / target | float32 | 2.6e-5 / 5.1e-5 | | |
| same, `load_pair`, this probe | draft / target | bfloat16 | 0.19 / 0.13 (logits 16 / 13) | | |
| Intel AMX-BF16 CPU (issue 25; 2 siblings) | Qwen2.5-Coder-0.5B | float32 | 2.4e-4 (sdpa), 2.8e-4 (eager) | | |

Logits reach about 17, so the old absolute limits (1e-4 float32, 5e-2 bf16) refused ordinary rounding. The
model's own chain path (a cached prefix, then one token) differs from one uncached pass by as much (float32 up to
7.8e-4 with eager attention, bf16 up to 0.29): every speculative method lives with this rounding, and greedy
output stays the target's wherever its two best tokens are further apart. bf16 rounds the logits themselves
(0.125 near 16), so its tolerance is a few of those units rather than float32's tolerance times a ratio of
epsilons.
"""

from __future__ import annotations

import weakref

import torch
from transformers import DynamicCache

from ...core.drafting import additive_mask
from ...core.cache import FULL_LAYER_TYPES, CacheSupportError
from ...core.compat import cache_argument, cache_layers
from ...core.device import input_device

_CHECKED: "weakref.WeakKeyDictionary[torch.nn.Module, str | None]" = weakref.WeakKeyDictionary()
RELATIVE_TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-3, torch.bfloat16: 5e-2, torch.float16: 5e-2}
"""Largest |tree - alone| logit difference accepted, relative to the largest |logit|: >= 30x (float32) and about 3x
(bf16) the rounding measured above, and >= 5x below the smallest difference a fault made (24-31% of the scale).
Dtypes not listed get bf16's."""
BLOCK_MASK_ATTENTION = ("flex_attention",)
"""Attention implementations refused without a probe: given a 4D tensor mask, torch 2.13's compiled flex kernel
for CPU fails its bounds check for some tree shapes and corrupts memory (a crash, not an error) for others."""
PREFIX_TOKENS = 5
SIBLINGS = 4
"""Four siblings: a fault shows on the last one after three others (mask) or three positions on (positions)."""


def check_tree_support(model: torch.nn.Module, role: str) -> None:
    """Raise CacheSupportError (a ValueError) saying what is missing when `model` cannot read token trees.

    Args:
        model: The draft or the target, on its device and in its dtype.
        role: "draft" or "target", for the message.
    """
    if model not in _CHECKED:
        _CHECKED[model] = _problem(model)
    problem = _CHECKED[model]
    if problem is not None:
        raise CacheSupportError(f"DySpec tree decoding cannot use the {role} model ({type(model).__name__}): {problem}")


def logit_rounding_tolerance(dtype: torch.dtype, scale: float) -> float:
    """The largest logit difference between two readings of the same tokens that is rounding, not a fault.

    A tree pass and one-token steps, or a verification pass over K + 1 tokens and the target's own decoding
    steps, add in other orders: their logits may differ by this much, and a near-tie within it may flip.

    Args:
        dtype: The model's parameter dtype.
        scale: The largest |logit| of the sequential reading.

    Returns:
        `RELATIVE_TOLERANCE[dtype] * scale` (bf16's relative tolerance for unlisted dtypes).
    """
    return RELATIVE_TOLERANCE.get(dtype, RELATIVE_TOLERANCE[torch.bfloat16]) * max(scale, 1e-6)


def _problem(model: torch.nn.Module) -> str | None:
    layers = {type(layer).__name__ for layer in cache_layers(DynamicCache(config=model.config))}
    odd = sorted(layers - set(FULL_LAYER_TYPES))
    if odd:
        return (f"its cache has {odd} layers (a sliding window or a recurrent state), whose positions cannot be "
                "gathered to the accepted path. Use chain methods (SpecDec++, fixed K) with this model.")
    implementation = getattr(model.config, "_attn_implementation", None)
    if implementation in BLOCK_MASK_ATTENTION:  # not probed: its compiled kernel may write out of bounds
        return (f"attention implementation {implementation!r} takes block masks, not a prepared 4D attention mask. "
                "Load it with attn_implementation='sdpa' or 'eager', or use a chain method (SpecDec++, fixed K).")
    try:
        difference, scale = tree_difference(model)
    except Exception as err:  # the forward pass rejected the mask or the position ids
        return (f"it cannot read a token tree in one pass: a forward pass with a prepared 4D attention mask and "
                f"per-token position ids failed ({type(err).__name__}: {err}). Chain methods (SpecDec++, fixed K) "
                "work with this model.")
    dtype = model.dtype
    tolerance = logit_rounding_tolerance(dtype, scale)
    if difference > tolerance:
        return (f"it does not apply a prepared 4D attention mask and per-token position ids as given (tree logits "
                f"differ from sequential ones by {difference:.3g} with logits up to {scale:.3g}; rounding in "
                f"{str(dtype).removeprefix('torch.')} stays below {tolerance:.3g}; attention implementation "
                f"{implementation!r}). Load it with attn_implementation='sdpa' or 'eager' if it uses another one, "
                "or use a chain method.")
    return None


@torch.no_grad()
def tree_difference(model: torch.nn.Module) -> tuple[float, float]:
    """Read `SIBLINGS` sibling tokens after a prefix as one tree pass and each alone.

    Returns:
        The largest absolute logit difference between the two readings, and the largest |logit| of the
        sequential one (the scale the difference is judged against).
    """
    device = input_device(model)
    vocab = model.config.get_text_config().vocab_size
    generator = torch.Generator().manual_seed(0)
    prefix = torch.randint(1, vocab, (1, PREFIX_TOKENS), generator=generator).to(device)
    siblings = torch.randint(1, vocab, (SIBLINGS,), generator=generator).to(device)
    key = cache_argument(model)
    cache = DynamicCache()
    model(input_ids=prefix, use_cache=True, **{key: cache})
    # every sibling sees the prefix and itself, none sees another one; all sit at the same position
    allowed = torch.cat([torch.ones((SIBLINGS, PREFIX_TOKENS), dtype=torch.bool),
                         torch.eye(SIBLINGS, dtype=torch.bool)], dim=1).to(device)
    dtype = model.dtype
    positions = torch.full((1, SIBLINGS), PREFIX_TOKENS, device=device)
    tree = model(input_ids=siblings[None], attention_mask=additive_mask(allowed, dtype), position_ids=positions,
                 use_cache=True, **{key: cache}).logits[0].float()
    alone = torch.stack([model(input_ids=torch.cat([prefix, token.reshape(1, 1)], dim=1), use_cache=False)
                         .logits[0, -1].float() for token in siblings])
    return float((tree - alone).abs().max()), float(alone.abs().max())
