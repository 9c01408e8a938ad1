"""Behavioural self-checks of what hf_specdecpp relies on in transformers, one per decoding route.

Reading transformers' source cannot tell whether a new release still behaves as the package expects; running
it can. Each check runs a tiny call on a tiny model pair and compares the output with the target's own greedy
output:

- `check_assisted_route`: a `candidate_generator=` call of one sequence inside transformers' own assisted
  decoding (transformers must ask for our candidate generator, use its candidates and keep the output exact);
- `check_own_loop`: the package's own decoding loop, reached through transformers' public `custom_generate=`
  hook, on a left-padded batch of two (what the loop writes into transformers' cache objects is exercised);
- `check_cache_layout`: the cache layout the own loop edits directly (`layers` with `keys`/`values` tensors,
  rollback by `crop`, row re-alignment), checked value by value so that a cache the loop cannot see into fails
  instead of being skipped silently.

Each check returns None when it holds and a one-line description of what changed when it does not. The
generate() patch (`generate_patch`) runs them once, before the first use, on a transformers release outside the
tested range, and routes calls to whatever still works. This module does not import the patch: the patch must
be installed before `check_assisted_route` is called.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from ..core.compat import UpstreamChangedError

__all__ = ["UpstreamChangedError", "check_assisted_route", "check_cache_layout", "check_own_loop",
           "verify_upstream"]

_PROMPT = [2, 5, 6, 7, 8]
_NEW_TOKENS = 8


@functools.lru_cache(maxsize=1)
def _pair() -> tuple[Any, Any]:
    from ..testing import tiny_pair

    return tiny_pair("llama", noise=0.02, seed=1)


def _method(draft: Any) -> Any:
    from ..methods import FixedKMethod

    return FixedKMethod(num_candidates=2, draft_model=draft)


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".strip()


def _ran_our_drafting(out: Any) -> bool:
    stats = getattr(out, "speculation_stats", None)
    return stats is not None and stats.rounds > 0 and stats.draft_forwards > 0


@torch.no_grad()
def check_assisted_route() -> str | None:
    """A one-sequence `generate(..., candidate_generator=...)` call through transformers' assisted decoding.

    Returns:
        `None` when transformers asked for our candidate generator and the output equals the target's greedy
        output; otherwise what went wrong, in one line.
    """
    target, draft = _pair()
    ids = torch.tensor([_PROMPT])
    reference = target.generate(ids, max_new_tokens=_NEW_TOKENS, do_sample=False)
    try:
        out = target.generate(ids, assistant_model=draft, candidate_generator=_method(None),
                              max_new_tokens=_NEW_TOKENS, do_sample=False, return_dict_in_generate=True)
    except Exception as err:  # any failure inside transformers' assisted decoding means the route is unusable
        return f"its assisted decoding failed with our candidate generator ({_describe(err)})"
    if not _ran_our_drafting(out):
        return "its assisted decoding no longer asks for the candidate generator hf_specdecpp supplies"
    if not torch.equal(out.sequences, reference):
        return "its assisted decoding with our candidate generator no longer reproduces the target's greedy output"
    return None


@torch.no_grad()
def check_own_loop() -> str | None:
    """The package's own chain loop through `custom_generate=`, on a left-padded batch of two prompts.

    Returns:
        `None` when each row equals the target's greedy output for that prompt alone; otherwise what went wrong.
    """
    layout = check_cache_layout()
    if layout is not None:
        return layout
    target, draft = _pair()
    short, long = [3, 9, 4], [2, 5, 6, 7, 8]
    batch = torch.tensor([[0, 0] + short, long])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    try:
        out = target.generate(batch, attention_mask=mask, custom_generate=_method(draft),
                              max_new_tokens=_NEW_TOKENS, do_sample=False, return_dict_in_generate=True,
                              pad_token_id=0)
    except Exception as err:
        return f"generate(custom_generate=...) failed on a padded batch ({_describe(err)})"
    if not _ran_our_drafting(out):
        return "generate(custom_generate=...) no longer runs the decoding method it is given"
    for row, prompt in enumerate((short, long)):
        alone = target.generate(torch.tensor([prompt]), max_new_tokens=_NEW_TOKENS, do_sample=False)[0]
        got = out.sequences[row, batch.shape[1]:batch.shape[1] + _NEW_TOKENS]
        if not torch.equal(got, alone[len(prompt):]):
            return "the own decoding loop no longer reproduces the target's greedy output on a padded batch"
    return None


@torch.no_grad()
def check_cache_layout() -> str | None:
    """The cache structure the own loop edits: per-layer `keys`/`values`, rollback and row re-alignment.

    Returns:
        `None` when a cache filled by a forward pass of a padded batch of two can be rolled back and re-aligned
        with the exact values expected; otherwise what differs.
    """
    from ..core.cache import new_batch_cache, realign, rollback
    from ..core.compat import cache_kwargs, cache_layers

    target, _ = _pair()
    cache = new_batch_cache()
    ids = torch.tensor([[2, 5, 6, 7, 8], [3, 9, 4, 10, 11]])
    try:
        target(input_ids=ids, use_cache=True, **cache_kwargs(target, cache))
        layers = cache_layers(cache)
    except Exception as err:
        return f"a forward pass into the loop's cache failed ({_describe(err)})"
    if not layers:
        return f"{type(cache).__name__} has no per-layer storage (`layers`) after a forward pass"
    first = layers[0]
    keys, values = getattr(first, "keys", None), getattr(first, "values", None)
    if not (isinstance(keys, torch.Tensor) and isinstance(values, torch.Tensor)) or keys.dim() != 4 \
            or keys.shape[0] != 2 or keys.shape[-2] != ids.shape[1]:
        return (f"cache layers ({type(first).__name__}) no longer hold `keys`/`values` tensors of shape "
                "(batch, heads, positions, head_dim)")
    before = keys.clone()
    rollback(cache, 2)
    after = cache_layers(cache)[0]
    if cache.get_seq_length() != 3 or after.keys.shape[-2] != 3 or not torch.equal(after.keys, before[..., :3, :]):
        return "crop(-n) no longer removes the newest n positions of every layer"
    realign(cache, [0, 0], [3, 1])  # row 1 keeps its first position, right-aligned: [pad, pad, p0]
    moved = cache_layers(cache)[0].keys
    if moved.shape[-2] != 3 or not torch.equal(moved[0], before[0, :, :3]) \
            or not torch.equal(moved[1, :, 2], before[1, :, 0]):
        return "re-aligning batch rows in the cache no longer moves the values the loop expects"
    return None


def verify_upstream() -> None:
    """Run every check and raise `UpstreamChangedError` naming the first that fails (the test suite's entry).

    The generate() patch must be installed (`hf_specdecpp.install()`).
    """
    for name, check in (("candidate_generator= (transformers' assisted decoding)", check_assisted_route),
                        ("the own decoding loop (custom_generate=)", check_own_loop)):
        problem = check()
        if problem is not None:
            raise UpstreamChangedError(f"{name}: {problem}")
