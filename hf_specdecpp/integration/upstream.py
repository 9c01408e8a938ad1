"""A behavioural check of the transformers contract the generate() patch relies on.

Instead of reading transformers' source, run a tiny assisted round through each route on a tiny model pair
and check what must hold: transformers asks the patch for a candidate generator and uses its candidates, the
`custom_generate=` route runs the method's own loop, and both give the target's own greedy output. The test
suite calls `verify_upstream()`; outside the tested transformers range, the patch runs it once before its first
use and refuses to serve calls if it fails.
"""

from __future__ import annotations

import functools

import torch


class UpstreamChangedError(RuntimeError):
    """transformers no longer behaves as hf_specdecpp's generate() patch expects."""


@functools.lru_cache(maxsize=1)
def verify_upstream() -> None:
    """Raise UpstreamChangedError when a tiny round through either route does not behave as expected."""
    from ..methods import FixedLengthCandidateGenerator
    from ..testing import tiny_pair
    from .generate_patch import install, is_installed

    if not is_installed():
        install()
    target, draft = tiny_pair("llama", noise=0.02, seed=1)
    ids = torch.tensor([[2, 5, 6, 7, 8]])
    reference = target.generate(ids, max_new_tokens=8, do_sample=False)
    for route in ("candidate_generator", "custom_generate"):
        method = FixedLengthCandidateGenerator(num_candidates=2, draft_model=draft)
        try:
            out = target.generate(ids, max_new_tokens=8, do_sample=False, return_dict_in_generate=True,
                                  **{route: method})
        except Exception as err:
            raise UpstreamChangedError(f"A tiny generate(..., {route}=...) call failed on this transformers release: "
                                       f"{type(err).__name__}: {err}") from err
        stats = getattr(out, "speculation_stats", None)
        if stats is None or stats.rounds == 0 or stats.draft_forwards == 0:
            raise UpstreamChangedError(f"generate(..., {route}=...) did not run hf_specdecpp's drafting.")
        if not torch.equal(out.sequences, reference):
            raise UpstreamChangedError(f"generate(..., {route}=...) no longer reproduces the target's greedy output.")
