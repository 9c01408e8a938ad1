"""Checks that turn unsupported inputs into clear errors before any generation work starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import GenerationConfig, PreTrainedModel


def output_vocab_size(model: PreTrainedModel) -> int:
    """The size of the model's logits: its output layer's width, else the config's vocab size."""
    embeddings = model.get_output_embeddings()
    if embeddings is not None and hasattr(embeddings, "out_features"):
        return int(embeddings.out_features)
    return int(model.config.get_text_config().vocab_size)


def check_pair(target: PreTrainedModel, draft: PreTrainedModel) -> None:
    """Draft and target must share one vocabulary (same tokenizer): their logits are compared index by index."""
    target_vocab, draft_vocab = output_vocab_size(target), output_vocab_size(draft)
    if target_vocab != draft_vocab:
        raise ValueError(
            f"The draft model's vocabulary ({draft_vocab} tokens) differs from the target's ({target_vocab} "
            "tokens). SpecDec++ needs a draft and a target that share one tokenizer."
        )
    if draft.config.is_encoder_decoder or target.config.is_encoder_decoder:
        raise ValueError("hf_specdecpp supports decoder-only draft and target models.")


def check_single_sequence(input_ids: torch.Tensor, generation_config: GenerationConfig) -> None:
    """Speculative decoding here runs one sequence at a time."""
    if input_ids.shape[0] != 1:
        raise ValueError(
            f"hf_specdecpp supports batch size 1 (got a batch of {input_ids.shape[0]} sequences): "
            "call generate() once per prompt."
        )
    if (generation_config.num_return_sequences or 1) > 1:
        raise ValueError("hf_specdecpp supports num_return_sequences=1 only.")
    if (generation_config.num_beams or 1) > 1:
        raise ValueError("Speculative decoding does not combine with beam search (num_beams > 1).")


def check_tokenizers(tokenizer, assistant_tokenizer) -> None:
    """When both tokenizers are given, they must be the same vocabulary."""
    if tokenizer is None or assistant_tokenizer is None:
        return
    if tokenizer.get_vocab() != assistant_tokenizer.get_vocab():
        raise ValueError(
            "The draft's tokenizer differs from the target's. SpecDec++ needs a draft and a target that share "
            "one tokenizer (transformers' universal assisted generation handles different tokenizers)."
        )


# Architectures whose forward pass is checked (tests/test_tree_mask_and_cache.py) to use a prepared 4D attention mask
# as-is together with explicit position ids, with a DynamicCache of gatherable full-attention layers.
TREE_ARCHITECTURES = ("llama", "qwen2")
TREE_ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")


def check_tree_support(model: PreTrainedModel, role: str) -> None:
    """DySpec reads a token tree in one pass: the model must take a custom 4D mask, position ids, a plain cache."""
    config = model.config.get_text_config()
    name = f"the {role} model ({type(model).__name__}, model_type {config.model_type!r})"
    if config.model_type not in TREE_ARCHITECTURES:
        raise ValueError(
            f"DySpec tree decoding supports {', '.join(TREE_ARCHITECTURES)} architectures; {name} is not one of "
            "them. What it needs and has not been checked for this architecture: a prepared 4D tree attention "
            "mask used as-is, per-token position ids, and a DynamicCache whose keys/values can be gathered."
        )
    implementation = getattr(config, "_attn_implementation", None) or "eager"
    if implementation not in TREE_ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"DySpec tree decoding needs an arbitrary 4D attention mask, which the {implementation!r} attention "
            f"of {name} does not take: load it with attn_implementation='sdpa' or 'eager'."
        )
    if "sliding_attention" in (getattr(config, "layer_types", None) or ()):
        raise ValueError(
            f"DySpec tree decoding does not support sliding-window attention layers ({name}): their cache keeps "
            "only a window and cannot be gathered to the accepted path."
        )
