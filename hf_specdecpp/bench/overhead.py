"""Head overhead: the time the acceptance head adds to one drafted token, relative to the draft step itself."""

from __future__ import annotations

import statistics
import time

import torch

from ..core.compat import cache_kwargs
from ..head import AcceptanceHead
from ..utils.timing import synchronize


@torch.no_grad()
def measure_head_overhead(draft, head: AcceptanceHead, *, prompt_length: int = 128, repeats: int = 30,
                          warmup: int = 3, temperature: float | None = None, seed: int = 0) -> dict:
    """Median seconds of one draft step and of the head's scoring of its token, alternated step by step.

    The draft step is what the drafting loop does per token: a forward pass over one new token with a KV cache
    and hidden states, the logits processing (temperature when sampling) and the token choice. The head step
    is its per-token work: confidence features and the head for producing-state heads, the head alone for
    drafted-token heads. Returns both medians and `overhead` = head / draft.
    """
    from transformers import DynamicCache

    device = next(draft.parameters()).device
    head = head.to(device=device, dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(seed)
    vocab = draft.config.get_text_config().vocab_size
    prompt = torch.randint(2, vocab, (1, prompt_length), generator=gen).to(device)
    cache = DynamicCache(config=draft.config)
    out = draft(input_ids=prompt, **cache_kwargs(draft, cache), use_cache=True, logits_to_keep=1)
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    draft_times, head_times = [], []
    for i in range(warmup + repeats):
        synchronize(device)
        start = time.perf_counter()
        out = draft(input_ids=token, **cache_kwargs(draft, cache), use_cache=True, output_hidden_states=True,
                    logits_to_keep=1)
        scores = out.logits[:, -1].float()
        if temperature:
            scores = scores / temperature
            token = torch.multinomial(scores.softmax(-1), 1)
        else:
            token = scores.argmax(-1, keepdim=True)
        synchronize(device)
        middle = time.perf_counter()
        probability = head.score_step(out.hidden_states[-1][:, -1], scores, token[:, 0])
        float(probability)  # the loop reads the stop decision on the host
        end = time.perf_counter()
        cache.crop(-1)  # drop the timed token again
        if i >= warmup:
            draft_times.append(middle - start)
            head_times.append(end - middle)
    draft_s, head_s = statistics.median(draft_times), statistics.median(head_times)
    return {"draft_step_s": draft_s, "head_s": head_s, "overhead": head_s / draft_s, "repeats": repeats,
            "input_state": head.input_state, "confidence_features": head.use_confidence_features}
