"""The greedy oracle of a timed run: rounds that stop exactly at the first draft/target mismatch, with a cost
model from step times measured on the prompt (the exact mode replays the oracle with the measured cost curve
instead: `bench.exact`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.compat import cache_kwargs
from ..utils.timing import timed
from .records import OracleRecord


def oracle_rounds(target_tokens: Sequence[int], draft_predictions: Sequence[int]) -> list[int]:
    """Accepted drafts per round when every round stops exactly at the first draft/target mismatch.

    `draft_predictions[i]` is the draft's greedy token at new position i given the prompt and
    `target_tokens[:i]`. A round starting at position i drafts the run of agreeing tokens i..j-1 (all accepted)
    and the target's verify pass adds token j; the next round starts at j + 1.
    """
    n = len(target_tokens)
    out, i = [], 0
    while i < n:
        j = i
        while j < n and draft_predictions[j] == target_tokens[j]:
            j += 1
        out.append(j - i)
        i = j + 1
    return out


def _best_time(fn, device, repeats: int) -> float:
    """Best of `repeats` synchronised timings (`device`: a device or a model, whose devices are all waited for)."""
    return min(timed(fn, device)[1] for _ in range(repeats))


def _step_time(model, full: torch.LongTensor, split: int, width: int, repeats: int) -> float:
    """Best time of a cached pass of `model` over `width` tokens at position `split` of `full`."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    model(input_ids=full[:, :split].to(device), **cache_kwargs(model, cache), use_cache=True)
    ids = full[:, split:split + width].to(device)
    if ids.shape[1] < width:  # short outputs: reuse the last tokens
        ids = full[:, -width:].to(device)

    def run():
        model(input_ids=ids, **cache_kwargs(model, cache), use_cache=True, logits_to_keep=ids.shape[1])
        cache.crop(-ids.shape[1])

    return _best_time(run, model, repeats)


@torch.no_grad()
def compute_oracle(target, draft, prompt_id: str, input_ids: torch.LongTensor, target_tokens: Sequence[int],
                   repeats: int = 3) -> OracleRecord | None:
    """Greedy oracle for one prompt, with a cost model from step times measured here.

    Draft predictions along the target's output come from one teacher-forced draft pass. Step times (minimum of
    `repeats`, in the middle of the sequence, with KV cache): one draft decode step `t_d`, one target decode
    step `t_t`, and one target verify pass over `L` tokens `t_v(L)` with L = mean oracle round length
    (accepted + 1). Estimated speedup = `N * t_t / (R * t_v(L) + A * t_d)` for N new tokens, R rounds and A
    accepted drafts (prefill ignored: it is the same for both).
    """
    n = len(target_tokens)
    if n == 0:
        return None
    device = draft.device
    full = torch.cat([input_ids.to(device), torch.tensor([target_tokens], device=device)], dim=1)
    prompt_len = input_ids.shape[1]
    predictions = draft(input_ids=full[:, :-1]).logits[0, prompt_len - 1:].argmax(dim=-1).tolist()
    accepted = oracle_rounds(target_tokens, predictions)
    rounds, total_accepted = len(accepted), sum(accepted)
    verify_tokens = max(1, round(n / rounds))
    split = prompt_len + n // 2
    draft_step = _step_time(draft, full, split, 1, repeats)
    target_step = _step_time(target, full, split, 1, repeats)
    verify = _step_time(target, full, split, verify_tokens, repeats)
    cost = rounds * verify + total_accepted * draft_step
    return OracleRecord(prompt_id, n, rounds, total_accepted, accepted, draft_step, target_step, verify,
                        verify_tokens, n * target_step / cost if cost > 0 else float("nan"))
