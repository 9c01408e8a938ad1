"""The decoding loop of DySpec: grow a draft tree, verify it with ONE target forward pass, keep the accepted path.

Both front doors end here: `generate(custom_generate=generator)` calls the generator, which calls
`tree_decode`; `generate(candidate_generator=generator)` is routed by the generate() patch to the same
function, because transformers' assisted decoding can only verify a chain of candidates.

Cache invariant between rounds: the target's cache holds every token of `input_ids` but the last one, the
draft's cache holds a prefix of `input_ids` (the rest is fed at the start of the next round).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformers.generation.utils import GenerateDecoderOnlyOutput

from ..speculative_loop import check_loop_inputs, decoding_flags, finish_decoding, truncate_new_tokens
from .cache import check_gatherable, compact_cache
from .tree import ROOT, DraftTree, additive_mask, causal_rows, node_positions, node_rows, prefix_layout
from .verify import greedy_walk, sampling_walk

if TYPE_CHECKING:
    from transformers import DynamicCache, GenerationConfig, LogitsProcessorList, PreTrainedModel, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    from .generator import DySpecCandidateGenerator


@torch.no_grad()
def tree_logits(
    model: PreTrainedModel,
    input_ids: torch.LongTensor,
    tree: DraftTree,
    cache: DynamicCache,
    padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run `model` once over the uncached prefix tokens and all tree nodes; return fp32 logits `(nodes+1, V)`.

    Row 0 holds the logits after the root (the last prefix token), row i those after node i. The cache must
    hold a prefix of `input_ids`; afterwards it also holds the rest of `input_ids` and every tree node, node i
    at position `len(input_ids) + i - 1`.
    """
    length = input_ids.shape[1]
    cached = cache.get_seq_length()
    nodes = list(range(1, tree.num_nodes + 1))
    kv_length = length + len(nodes)
    visible, positions = prefix_layout(padding_mask, length, input_ids.device)
    slots = [length - 1] + [length + node - 1 for node in nodes]
    allowed = torch.cat([causal_rows(visible, cached, kv_length), node_rows(tree, nodes, slots, visible, kv_length)])
    node_ids = torch.tensor([tree.tokens[node] for node in nodes], dtype=torch.long, device=input_ids.device)
    outputs = model(
        input_ids=torch.cat([input_ids[0, cached:], node_ids])[None],
        attention_mask=additive_mask(allowed, model.dtype),
        position_ids=torch.cat([positions[cached:], node_positions(tree, nodes, positions[-1])])[None],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=len(nodes) + 1,
    )
    return outputs.logits[0].float()


@torch.no_grad()
def tree_decode(
    model: PreTrainedModel,
    input_ids: torch.LongTensor,
    generator: DySpecCandidateGenerator,
    logits_processor: LogitsProcessorList,
    stopping_criteria: StoppingCriteriaList,
    generation_config: GenerationConfig,
    draft_model: PreTrainedModel | None = None,
    streamer: BaseStreamer | None = None,
    synced_gpus: bool = False,
    **model_kwargs,
) -> GenerateDecoderOnlyOutput | torch.LongTensor:
    """Decode with `generator` growing draft trees and `model` verifying them; returns like generate()."""
    cache = check_loop_inputs(model_kwargs, synced_gpus, draft_model, type(generator).__name__)
    check_gatherable(cache, "target")
    input_ids = input_ids.to(model.device)  # generate() accepts CPU inputs for a model elsewhere
    generator.acquire()
    try:
        generator.bind(
            target=model,
            input_ids=input_ids,
            assistant_model=draft_model,
            generation_config=generation_config,
            model_kwargs=model_kwargs,
            inputs_tensor=input_ids,
            logits_processor=logits_processor,
        )
        padding_mask = model_kwargs.get("attention_mask")
        if padding_mask is not None and bool(padding_mask.all()):
            padding_mask = None
        do_sample, eos_token_ids, return_dict, output_scores = decoding_flags(generation_config)
        all_scores: tuple[torch.Tensor, ...] = ()
        if streamer is not None:
            streamer.put(input_ids.cpu())

        while True:
            length = input_ids.shape[1]
            tree = generator.grow(input_ids)
            logits = tree_logits(model, input_ids, tree, cache, padding_mask)
            scores: dict[int, torch.Tensor] = {}

            def target_scores(node: int) -> torch.Tensor:
                """The target's processed scores `(V,)` after `node`, computed once per visited node."""
                if node not in scores:
                    path = torch.tensor([tree.path_tokens(node)], dtype=torch.long, device=input_ids.device)
                    sequence = torch.cat([input_ids, path], dim=-1)
                    scores[node] = logits_processor(sequence, logits[node: node + 1])[0]
                return scores[node]

            if do_sample:
                path, bonus = sampling_walk(tree, lambda node: target_scores(node).softmax(-1),
                                            generator.child_acceptance)
            else:
                path, bonus = greedy_walk(tree, target_scores)
            tokens = torch.tensor([[tree.tokens[node] for node in path] + [bonus]], device=input_ids.device)
            tokens = truncate_new_tokens(tokens, generation_config.max_length - length, eos_token_ids)
            accepted = path[: tokens.shape[1] - 1]
            keep = torch.cat([torch.arange(length), length - 1 + torch.tensor(accepted, dtype=torch.long)])
            compact_cache(cache, keep)
            input_ids = torch.cat([input_ids, tokens], dim=-1)
            generator.finish_round(tree, accepted, input_ids)
            if streamer is not None:
                streamer.put(tokens.cpu())
            if output_scores:
                all_scores += tuple(scores[node][None] for node in [ROOT] + path[: tokens.shape[1] - 1])
            if bool(stopping_criteria(input_ids, all_scores or None).all()):
                break
    finally:
        generator.release()

    return finish_decoding(input_ids, streamer, return_dict, all_scores if output_scores else None, cache)
