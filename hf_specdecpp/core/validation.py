"""Argument checks in one place: every error names the argument and says what was expected.

The `check_*` functions validate single values (used by method configs, training and the CLI alike);
`check_generation_inputs` turns inputs our decoding loops cannot honour into clear errors before any work;
`check_empty_cache` refuses a pre-filled cache on every route.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import GenerationConfig


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def check_int(name: str, value: Any, minimum: int | None = 1, maximum: int | None = None,
              allow_none: bool = False) -> int | None:
    """An integer within [minimum, maximum] (None allowed when `allow_none`).

    Args:
        name (`str`):
            The argument's name, for the message.
        value (`Any`):
            The value to check (a `bool` is not an integer here).
        minimum (`int`, *optional*, defaults to 1):
            The smallest allowed value; None for no lower bound.
        maximum (`int`, *optional*):
            The largest allowed value; None (the default) for no upper bound.
        allow_none (`bool`, *optional*, defaults to `False`):
            Whether None is accepted.

    Returns:
        `int` or `None`: `value`, unchanged.

    Raises:
        ValueError: `value` is not an integer or lies outside the bounds.
    """
    if value is None and allow_none:
        return None
    bounds = []
    if minimum is not None:
        bounds.append(f">= {minimum}")
    if maximum is not None:
        bounds.append(f"<= {maximum}")
    expected = "an integer" + (" " + " and ".join(bounds) if bounds else "") + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, allow_none: bool = False) -> float | None:
    """A finite number in the interval given by `low`/`high` (open ends with `*_open`).

    Args:
        name (`str`):
            The argument's name, for the message.
        value (`Any`):
            The value to check: an `int` or `float` (not a `bool`), finite.
        low (`float`, *optional*):
            The lower end; None (the default) for none.
        high (`float`, *optional*):
            The upper end; None (the default) for none.
        low_open (`bool`, *optional*, defaults to `False`):
            Whether `low` itself is excluded.
        high_open (`bool`, *optional*, defaults to `False`):
            Whether `high` itself is excluded.
        allow_none (`bool`, *optional*, defaults to `False`):
            Whether None is accepted.

    Returns:
        `float` or `None`: `value` as a `float`.

    Raises:
        ValueError: `value` is not a finite number or lies outside the interval.
    """
    if value is None and allow_none:
        return None
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    expected = f"a finite number in {interval}" + (" or None" if allow_none else "")
    if not _is_number(value):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    value = float(value)
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def check_probability(name: str, value: Any, allow_none: bool = False) -> float | None:
    """A number strictly between 0 and 1 (a threshold on a probability).

    Args:
        name (`str`):
            The argument's name, for the message.
        value (`Any`):
            The value to check.
        allow_none (`bool`, *optional*, defaults to `False`):
            Whether None is accepted.

    Returns:
        `float` or `None`: `value` as a `float`.

    Raises:
        ValueError: `value` is not a number in (0, 1).
    """
    return check_number(name, value, 0.0, 1.0, low_open=True, high_open=True, allow_none=allow_none)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """One of a fixed set of values.

    Args:
        name (`str`):
            The argument's name, for the message.
        value (`Any`):
            The value to check.
        choices (`Iterable[Any]`):
            The allowed values (listed in the message).

    Returns:
        `Any`: `value`, unchanged.

    Raises:
        ValueError: `value` is not one of `choices`.
    """
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_candidate_bounds(min_candidates: Any, max_candidates: Any) -> tuple[int, int]:
    """Bounds on candidates per round: integers >= 1 with min <= max.

    Args:
        min_candidates (`Any`):
            The fewest candidates drafted per round.
        max_candidates (`Any`):
            The most candidates drafted per round.

    Returns:
        `tuple[int, int]`: `(min_candidates, max_candidates)`, unchanged.

    Raises:
        ValueError: either is not an integer >= 1, or min exceeds max.
    """
    check_int("min_candidates", min_candidates)
    check_int("max_candidates", max_candidates)
    if min_candidates > max_candidates:
        raise ValueError(f"min_candidates ({min_candidates}) must not exceed max_candidates ({max_candidates})")
    return min_candidates, max_candidates


# ------------------------------------------------------------------------------------------ generate() inputs
MODEL_KWARGS_WE_HANDLE = {
    "attention_mask", "use_cache", "past_key_values", "cache", "cache_position", "position_ids",
    "output_attentions", "output_hidden_states", "return_dict", "logits_to_keep", "num_logits_to_keep",
    "token_type_ids",
}
"""Model kwargs generate() may pass to a decoding method that our loops either use or can safely drop.
`token_type_ids` and `position_ids` are only accepted in the trivial forms checked below."""


def check_generation_inputs(input_ids: torch.Tensor, model_kwargs: dict, generation_config: GenerationConfig,
                            route: str, allow_batch: bool = True) -> None:
    """Refuse what our decoding loops cannot honour, with a message naming the argument.

    - beam search (`num_beams > 1`), diverse groups, `use_cache=False`, encoder-decoder inputs;
    - a batch without an attention mask, or right/inner padding (speculative rows must be left-padded);
    - model inputs the loop would otherwise drop silently (`pixel_values`, `inputs_embeds`, non-zero
      `token_type_ids`, 3D position ids, ...).

    Args:
        input_ids (`torch.LongTensor` of shape `(B, T)`): the prompts.
        model_kwargs (`dict`): generate()'s model kwargs (`attention_mask`, `use_cache`, ...).
        generation_config (`GenerationConfig`): its `num_beams`, `num_beam_groups` and `pad_token_id` are read.
        route (`str`): how the method was called, for the messages.
        allow_batch (`bool`, *optional*, defaults to `True`): whether more than one sequence is accepted.

    Returns:
        `None`.

    Raises:
        ValueError: any of the above, the message naming the argument.
    """
    num_beams = getattr(generation_config, "num_beams", 1) or 1
    if num_beams > 1:
        raise ValueError(f"Speculative decoding does not combine with beam search: got num_beams={num_beams} "
                         f"({route}). Use num_beams=1 (greedy or sampling).")
    if (getattr(generation_config, "num_beam_groups", 1) or 1) > 1:
        raise ValueError("Speculative decoding does not combine with diverse beam search (num_beam_groups > 1).")
    if not model_kwargs.get("use_cache", True):
        raise ValueError("Speculative decoding needs the KV cache: use_cache=False is not supported.")
    unknown = sorted(k for k, v in model_kwargs.items() if k not in MODEL_KWARGS_WE_HANDLE and v is not None)
    if unknown:
        raise ValueError(f"hf_specdecpp's decoding loop ({route}) cannot pass {unknown} to the models: it supports "
                         "text-only decoder models fed with input_ids (and attention_mask). Use plain generate() "
                         "for these inputs.")
    token_types = model_kwargs.get("token_type_ids")
    if token_types is not None and bool(token_types.any()):
        raise ValueError("token_type_ids other than all zeros are not supported by speculative decoding.")
    position_ids = model_kwargs.get("position_ids")
    if position_ids is not None and position_ids.dim() != 2:
        raise ValueError(f"position_ids of shape {tuple(position_ids.shape)} (e.g. 3D multimodal positions) are not "
                         "supported by speculative decoding; pass 2D position ids or none.")
    batch = input_ids.shape[0]
    if batch > 1 and not allow_batch:
        raise ValueError(f"{route} supports batch size 1 here (got {batch} sequences).")
    mask = model_kwargs.get("attention_mask")
    if mask is None:  # generate() drops an all-ones mask (5.18+); padding would show as pad tokens at the start
        pad = generation_config.pad_token_id
        if batch > 1 and pad is not None and bool((input_ids[:, 0] == int(pad)).any()):
            raise ValueError(f"A batch of {batch} prompts with padding needs an attention_mask (pass the tokenizer's "
                             "`attention_mask`, with left padding), so that padding can be told from text.")
        return
    check_left_padding(mask)


def check_left_padding(mask: torch.Tensor) -> None:
    """Every row of a 2D attention mask must be zeros (padding) followed by ones (text), with some text.

    Args:
        mask (`torch.Tensor` of shape `(B, T)`):
            The attention mask (nonzero entries count as text).

    Returns:
        `None`.

    Raises:
        ValueError: the mask is not 2D, a row has no text, or a row shows right or inner padding.
    """
    if mask.dim() != 2:
        raise ValueError(f"attention_mask must be 2D (batch, length), got shape {tuple(mask.shape)}")
    binary = mask.bool()
    if not bool(binary.any(dim=1).all()):
        raise ValueError("attention_mask has a row without any token to attend to (an empty prompt)")
    if bool((binary[:, :-1] & ~binary[:, 1:]).any()):
        raise ValueError("attention_mask shows right or inner padding; speculative decoding needs left padding "
                         "(tokenizer(..., padding=True, padding_side='left')).")


def check_empty_cache(argument: str, cache: Any, route: str) -> None:
    """Refuse a pre-filled KV cache: speculative decoding reads the whole prompt into both models' caches.

    Args:
        argument (`str`):
            The generate() argument that holds the cache, as the message names it (`past_key_values=`).
        cache (`Any`):
            Its value (None, an empty cache and a filled one are told apart): a cache's `get_seq_length()` is read,
            else its `len()`.
        route (`str`):
            How the method was called, for the message.

    Returns:
        `None`.

    Raises:
        ValueError: the cache already holds tokens.
    """
    if cache is None:
        return
    filled = cache.get_seq_length() if hasattr(cache, "get_seq_length") else len(cache)
    if filled:
        raise ValueError(
            f"{argument} holds a pre-filled cache ({int(filled)} tokens), but hf_specdecpp ({route}) starts from "
            "an empty cache: the draft and the target both read the whole prompt. Pass the whole text as input_ids "
            "with no cache (or an empty one), or continue from this cache with plain generate().")
