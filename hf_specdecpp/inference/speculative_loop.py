"""A draft-then-verify decoding loop for transformers' public `custom_generate=` hook (no patching).

generate() prepares everything (generation config, logits processors, stopping criteria, KV cache) and then
calls a candidate generator of ours as the decoding method. This loop verifies its candidates with one
target forward pass per round, exactly as transformers' assisted decoding does: greedy keeps the longest
prefix that matches the target's argmax plus one target token; sampling uses speculative (rejection)
sampling against the processed draft scores, which keeps the target's distribution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformers.generation.utils import GenerateDecoderOnlyOutput, _speculative_sampling

if TYPE_CHECKING:
    from transformers import GenerationConfig, LogitsProcessorList, PreTrainedModel, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    from .candidate_generator import DraftLoopCandidateGenerator


def select_tokens(
    candidate_ids: torch.LongTensor,
    candidate_logits: torch.Tensor | None,
    target_scores: torch.Tensor,
    num_candidates: int,
    do_sample: bool,
) -> tuple[torch.LongTensor, int]:
    """Verify `num_candidates` drafted tokens against the target's processed scores `(1, k+1, V)`.

    Returns the tokens to append (accepted candidates plus one target token) and the number accepted.
    """
    if do_sample and candidate_logits is not None and num_candidates > 0:
        tokens, num_accepted = _speculative_sampling(candidate_ids, candidate_logits, num_candidates, target_scores)
        return tokens, int(num_accepted)
    if do_sample:
        chosen = torch.multinomial(target_scores[0].softmax(dim=-1), num_samples=1).T
    else:
        chosen = target_scores.argmax(dim=-1)
    drafted = candidate_ids[:, candidate_ids.shape[1] - num_candidates:]
    mismatch = (drafted != chosen[:, :num_candidates]).int()
    num_accepted = int((mismatch.cumsum(dim=-1) == 0).sum())
    return chosen[:, : num_accepted + 1], num_accepted


def truncate_new_tokens(tokens: torch.LongTensor, budget: int, eos_token_ids: torch.Tensor | None) -> torch.LongTensor:
    """Cut the new tokens at the length budget and just after the first EOS."""
    tokens = tokens[:, :budget]
    if eos_token_ids is not None:
        hits = torch.isin(tokens[0], eos_token_ids.to(tokens.device)).nonzero()
        if hits.numel() > 0:
            tokens = tokens[:, : int(hits[0]) + 1]
    return tokens


def check_loop_inputs(model_kwargs: dict, synced_gpus: bool, draft: PreTrainedModel | None, generator_name: str):
    """Reject what our decoding loops cannot do; return the target's KV cache prepared by generate()."""
    if synced_gpus:
        raise ValueError("hf_specdecpp's custom_generate route does not support synced_gpus.")
    if not model_kwargs.get("use_cache", True):
        raise ValueError("Speculative decoding requires use_cache=True.")
    cache = model_kwargs.get("past_key_values")
    if cache is None or not hasattr(cache, "crop"):
        raise ValueError("Speculative decoding requires a croppable KV cache (the default DynamicCache).")
    if draft is None:
        raise ValueError(
            "With custom_generate=, transformers does not pass `assistant_model` to the decoding method: give "
            f"the draft to the generator, e.g. {generator_name}(..., draft_model=draft)."
        )
    return cache


@torch.no_grad()
def speculative_decode(
    model: PreTrainedModel,
    input_ids: torch.LongTensor,
    candidate_generator: DraftLoopCandidateGenerator,
    logits_processor: LogitsProcessorList,
    stopping_criteria: StoppingCriteriaList,
    generation_config: GenerationConfig,
    streamer: BaseStreamer | None = None,
    synced_gpus: bool = False,
    **model_kwargs,
) -> GenerateDecoderOnlyOutput | torch.LongTensor:
    """Decode with `candidate_generator` drafting and `model` verifying; returns like generate()."""
    cache = check_loop_inputs(model_kwargs, synced_gpus, candidate_generator.draft_model,
                              type(candidate_generator).__name__)
    candidate_generator.acquire()
    try:
        candidate_generator.bind(
            target=model,
            input_ids=input_ids,
            assistant_model=None,
            generation_config=generation_config,
            model_kwargs=model_kwargs,
            inputs_tensor=input_ids,
            logits_processor=logits_processor,
        )
        do_sample, eos_token_ids, return_dict, output_scores = decoding_flags(generation_config)
        base_mask = model_kwargs.get("attention_mask")
        all_scores: tuple[torch.Tensor, ...] = ()
        if streamer is not None:
            streamer.put(input_ids.cpu())

        while True:
            current_length = input_ids.shape[1]
            candidate_ids, candidate_logits = candidate_generator.get_candidates(input_ids)
            candidate_ids = candidate_ids.to(model.device)
            if candidate_logits is not None:
                candidate_logits = candidate_logits.to(model.device)
            num_candidates = candidate_ids.shape[1] - current_length

            new_ids = candidate_ids[:, cache.get_seq_length():]
            forward_kwargs = {}
            if base_mask is not None:
                extra = candidate_ids.shape[1] - base_mask.shape[1]
                mask = torch.cat([base_mask, base_mask.new_ones((1, extra))], dim=-1)
                forward_kwargs["attention_mask"] = mask
                forward_kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)[:, -new_ids.shape[1]:]
            outputs = model(
                input_ids=new_ids,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=num_candidates + 1,
                **forward_kwargs,
            )
            target_scores = outputs.logits[:, -num_candidates - 1:].float()
            for i in range(num_candidates + 1):
                target_scores[:, i] = logits_processor(candidate_ids[:, : current_length + i], target_scores[:, i])

            tokens, _ = select_tokens(candidate_ids, candidate_logits, target_scores, num_candidates, do_sample)
            tokens = truncate_new_tokens(tokens, generation_config.max_length - current_length, eos_token_ids)
            num_accepted = tokens.shape[1] - 1
            input_ids = torch.cat([input_ids, tokens], dim=-1)
            if num_candidates > num_accepted:
                cache.crop(num_accepted - num_candidates)  # drop the rejected candidates' keys/values
            if streamer is not None:
                streamer.put(tokens.cpu())
            if output_scores:
                all_scores += tuple(target_scores[:, i] for i in range(tokens.shape[1]))
            candidate_generator.update_candidate_strategy(input_ids, target_scores, num_accepted)
            if bool(stopping_criteria(input_ids, all_scores or None).all()):
                break
    finally:
        candidate_generator.release()

    return finish_decoding(input_ids, streamer, return_dict, all_scores if output_scores else None, cache)


def decoding_flags(generation_config: GenerationConfig) -> tuple[bool, torch.Tensor | None, bool, bool]:
    """(do_sample, EOS token tensor prepared by generate(), return_dict_in_generate, output_scores)."""
    return_dict = bool(generation_config.return_dict_in_generate)
    return (bool(generation_config.do_sample), getattr(generation_config, "_eos_token_tensor", None), return_dict,
            return_dict and bool(generation_config.output_scores))


def finish_decoding(input_ids: torch.LongTensor, streamer, return_dict: bool, scores: tuple | None, cache):
    """End the streamer and return what generate() returns: the sequences, or an output object."""
    if streamer is not None:
        streamer.end()
    if return_dict:
        return GenerateDecoderOnlyOutput(sequences=input_ids, scores=scores, past_key_values=cache)
    return input_ids
