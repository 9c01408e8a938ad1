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
