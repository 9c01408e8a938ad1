"""Can a model read a token tree? A capability probe instead of a list of architectures.

Tree decoding feeds a model several branches in one pass with a 4D attention mask and per-token position ids
on top of a plain dynamic cache, and afterwards gathers cache positions. `check_tree_support` checks exactly
that on the model itself, once per model: two sibling tokens read as a tree must give the logits each of them
gets when read alone after the prefix. Models whose cache keeps a sliding window or a recurrent state cannot be
gathered and are refused from their config.
"""

from __future__ import annotations

import weakref

import torch
from transformers import DynamicCache

from ...core.attention import additive_mask
from ...core.cache import FULL_LAYER_TYPES, CacheSupportError
from ...core.compat import cache_argument, cache_layers

_CHECKED: "weakref.WeakKeyDictionary[torch.nn.Module, str | None]" = weakref.WeakKeyDictionary()
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-8}


def check_tree_support(model: torch.nn.Module, role: str) -> None:
    """Raise CacheSupportError (a ValueError) saying what is missing when `model` cannot read token trees."""
    if model not in _CHECKED:
        _CHECKED[model] = _problem(model)
    problem = _CHECKED[model]
    if problem is not None:
        raise CacheSupportError(f"DySpec tree decoding cannot use the {role} model ({type(model).__name__}): {problem}")


def _problem(model: torch.nn.Module) -> str | None:
    layers = {type(layer).__name__ for layer in cache_layers(DynamicCache(config=model.config))}
    odd = sorted(layers - set(FULL_LAYER_TYPES))
    if odd:
        return (f"its cache has {odd} layers (a sliding window or a recurrent state), whose positions cannot be "
                "gathered to the accepted path. Use chain methods (SpecDec++, fixed K) with this model.")
    try:
        difference = _tree_difference(model)
    except Exception as err:  # the forward pass rejected the mask or the position ids
        return (f"it cannot read a token tree in one pass: a forward pass with a prepared 4D attention mask and "
                f"per-token position ids failed ({type(err).__name__}: {err}). Chain methods (SpecDec++, fixed K) "
                "work with this model.")
    dtype = next(model.parameters()).dtype
    if difference > TOLERANCE.get(dtype, 5e-2):
        implementation = getattr(model.config, "_attn_implementation", None)
        return (f"it does not apply a prepared 4D attention mask and per-token position ids as given (tree logits "
                f"differ from sequential ones by {difference:.2e}; attention implementation {implementation!r}). Load "
                "it with attn_implementation='sdpa' or 'eager', or use a chain method.")
    return None


@torch.no_grad()
def _tree_difference(model: torch.nn.Module) -> float:
    """Largest logit difference between reading two siblings as a tree and reading each alone."""
    device = next(model.parameters()).device
    vocab = model.config.get_text_config().vocab_size
    generator = torch.Generator().manual_seed(0)
    prefix = torch.randint(1, vocab, (1, 5), generator=generator).to(device)
    siblings = torch.randint(1, vocab, (2,), generator=generator).to(device)
    key = cache_argument(model)
    cache = DynamicCache()
    model(input_ids=prefix, use_cache=True, **{key: cache})
    allowed = torch.ones((2, 7), dtype=torch.bool, device=device)
    allowed[0, 6] = False  # sibling 0 does not see sibling 1
    allowed[1, 5] = False  # and the reverse
    dtype = next(model.parameters()).dtype
    positions = torch.tensor([[5, 5]], device=device)
    tree = model(input_ids=siblings[None], attention_mask=additive_mask(allowed, dtype), position_ids=positions,
                 use_cache=True, **{key: cache}).logits[0].float()
    alone = []
    for token in siblings:
        full = torch.cat([prefix, token.reshape(1, 1)], dim=1)
        alone.append(model(input_ids=full, use_cache=False).logits[0, -1].float())
    return float((tree - torch.stack(alone)).abs().max())
