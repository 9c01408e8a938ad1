"""Differences between the supported transformers releases, detected by feature (never by version number).

Tested range: `TESTED_RANGE`. Outside it the package still imports and warns once; the generate() patch is
then checked by behaviour before its first use (`hf_specdecpp.integration.upstream`).

What differs between releases, and how it is detected here:
- the KV cache's keyword: `cache=` since 5.24 (`past_key_values=` deprecated, to be removed in 5.40), before
  that `past_key_values=`: read from the model's `forward` signature (`cache_argument`);
- where generate() keeps the cache in its model kwargs (`"cache"` or `"past_key_values"`), and the attribute
  holding it on model outputs: whichever is present (`model_kwargs_cache`, `output_cache`);
- rolling back sliding-window and linear-attention layers: such layers keep only a window (or a recurrent
  state) unless `activate_past_recording()` was called (5.15+); `activate_past_recording` calls it when the
  cache offers it;
- static caches: croppable (`StaticLayer.crop`, 5.24) or not (`cache_is_croppable`).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
import transformers
from packaging.version import Version

MIN_TESTED = "5.15.0"
MAX_TESTED_EXCLUSIVE = "5.26.0"
TESTED_RANGE = f">={MIN_TESTED},<{MAX_TESTED_EXCLUSIVE}"
CACHE_KEYS = ("cache", "past_key_values")


class UpstreamChangedError(RuntimeError):
    """transformers no longer behaves as hf_specdecpp expects (the message says what changed and what to do)."""


def is_tested_transformers(version: str | None = None) -> bool:
    """True when `version` (default: the installed one) lies in the tested range.

    Args:
        version (`str`, *optional*):
            A transformers version string; its pre/dev/post suffix is ignored (`5.20.0.dev0` counts as `5.20.0`).
            Defaults to the installed `transformers.__version__`.

    Returns:
        `bool`: whether `MIN_TESTED <= version < MAX_TESTED_EXCLUSIVE`.
    """
    v = Version(Version(version or transformers.__version__).base_version)
    return Version(MIN_TESTED) <= v < Version(MAX_TESTED_EXCLUSIVE)


@functools.lru_cache(maxsize=None)
def _forward_parameters(model_class: type) -> frozenset[str]:
    return frozenset(inspect.signature(model_class.forward).parameters)


def cache_argument(model: torch.nn.Module) -> str:
    """The forward keyword that takes the KV cache for this model: `cache` or `past_key_values`.

    Args:
        model (`torch.nn.Module`):
            A transformers model; its class's `forward` signature is read (and cached per class).

    Returns:
        `str`: `"cache"` when `forward` has a `cache` parameter, else `"past_key_values"`.
    """
    params = _forward_parameters(type(model))
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(model: torch.nn.Module, cache: Any) -> dict[str, Any]:
    """`{keyword: cache}` for a direct forward call of `model` (see `cache_argument`).

    Args:
        model (`torch.nn.Module`):
            The model the cache is passed to.
        cache (`Any`):
            The KV cache (any value, passed through unchanged).

    Returns:
        `dict[str, Any]`: one entry, `cache_argument(model)` mapped to `cache`.
    """
    return {cache_argument(model): cache}


def supports_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the model's forward takes `logits_to_keep` (computing logits for the last positions only).

    Args:
        model (`torch.nn.Module`):
            A transformers model.

    Returns:
        `bool`: True when `forward` has a `logits_to_keep` parameter, or takes `**kwargs` and the model's
        `_supports_logits_to_keep()` says so.
    """
    params = _forward_parameters(type(model))
    return "logits_to_keep" in params or "kwargs" in params and hasattr(model, "_supports_logits_to_keep") \
        and model._supports_logits_to_keep()


def model_kwargs_cache(model_kwargs: dict[str, Any]) -> tuple[str, Any]:
    """(key, cache) of the KV cache generate() prepared in its model kwargs (cache None when there is none).

    Args:
        model_kwargs (`dict[str, Any]`):
            generate()'s model kwargs.

    Returns:
        `tuple[str, Any]`: the first of `"cache"`, `"past_key_values"` holding a value that is not None, with that
        value; else `("cache", None)` when the key `"cache"` is present (as None), `("past_key_values", None)`
        otherwise.
    """
    for key in CACHE_KEYS:
        if model_kwargs.get(key) is not None:
            return key, model_kwargs[key]
    return CACHE_KEYS[0] if "cache" in model_kwargs else "past_key_values", None


def output_cache(outputs: Any) -> Any:
    """The KV cache a forward pass returned (`outputs.cache` or `outputs.past_key_values`).

    Args:
        outputs (`ModelOutput` or `dict`):
            What the model's forward returned (attributes are read, or keys of a dict).

    Returns:
        `Any`: the first of `cache`, `past_key_values` that is not None, or None when neither is set.
    """
    for key in CACHE_KEYS:
        value = getattr(outputs, key, None) if not isinstance(outputs, dict) else outputs.get(key)
        if value is not None:
            return value
    return None


ROLLBACK_SPAN = 64
"""Default for `activate_past_recording`'s `span`: the most positions one rollback may remove."""


def activate_past_recording(cache: Any, span: int = ROLLBACK_SPAN) -> None:
    """Let sliding-window and linear-attention layers be rolled back after a rejection (a no-op elsewhere).

    Args:
        cache (`Any`):
            A transformers cache (any object without `activate_past_recording` is left alone).
        span (`int`, *optional*, defaults to `ROLLBACK_SPAN`):
            The most positions one rollback may remove (the largest draft of a round, plus one). From 5.25
            recurrent layers keep that many intermediate states of every multi-token forward pass
            (`recurrent_states_to_keep`); earlier releases cannot roll recurrent states back at all.

    Returns:
        `None`: the cache is changed in place.
    """
    activate = getattr(cache, "activate_past_recording", None)
    if activate is None:
        return
    if hasattr(cache, "get_recurrent_states_to_keep"):  # 5.25+: recurrent states keep a history
        activate(recurrent_states_to_keep=int(span))
    else:
        activate()


def cache_is_croppable(cache: Any) -> bool:
    """Whether `cache.crop(-n)` can remove the newest n positions (call it once the cache has seen a forward pass:
    layers with states only know then whether they hold a recurrent state, which cannot be rolled back).

    Args:
        cache (`Any`):
            A transformers cache.

    Returns:
        `bool`: False without a `crop` method; the cache's own `is_croppable` (transformers 5.17+) when it has
        one; otherwise whether every layer crops (key/value layers do, state layers only when recording past
        states and holding no recurrent state, static layers do not).

    Raises:
        UpstreamChangedError: on the per-layer path, when the cache keeps no `layers` list (see `cache_layers`).
    """
    if not hasattr(cache, "crop"):
        return False
    flag = getattr(cache, "is_croppable", None)
    if flag is not None:  # transformers 5.17+
        return bool(flag() if callable(flag) else flag)
    return all(_layer_croppable(layer) for layer in cache_layers(cache))


def _layer_croppable(layer: Any) -> bool:
    """Releases before `is_croppable`: key/value layers crop, state layers only when recording and without a
    recurrent state, static layers do not."""
    name = type(layer).__name__
    if name in ("DynamicLayer", "DynamicSlidingWindowLayer"):
        return True
    recurrent = getattr(layer, "is_recurrent_states_initialized", {}) or {}
    return bool(getattr(layer, "record_past", False)) and not any(recurrent.values())


def cache_layers(cache: Any) -> list[Any]:
    """The per-layer objects of a cache (`cache.layers`; the self-attention cache of an encoder-decoder cache).

    Args:
        cache (`Any`):
            A transformers cache, or an encoder-decoder cache (its `self_attention_cache` is read).

    Returns:
        `list[Any]`: the layer objects, in order.

    Raises:
        UpstreamChangedError: the cache keeps no `layers` list, so rolling back or re-aligning it would silently
            do nothing.
    """
    inner = getattr(cache, "self_attention_cache", cache)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise UpstreamChangedError(
            f"{type(inner).__name__} keeps no per-layer storage (`layers`): hf_specdecpp cannot roll back or "
            f"re-align it on transformers {transformers.__version__}.")
    return list(layers)


def static_cache_croppable() -> bool:
    """Whether static cache layers can drop rejected tokens (transformers 5.24+), as assisted decoding needs.

    Returns:
        `bool`: whether `transformers.cache_utils.StaticLayer` exists and has a `crop` method.
    """
    from transformers import cache_utils

    return hasattr(getattr(cache_utils, "StaticLayer", None), "crop")
