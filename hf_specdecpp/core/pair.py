"""Checks on a draft/target pair, and the map between their output vocabularies.

Speculative decoding compares the draft's and the target's distributions token by token, so the two models
must share one tokenizer. Their output layers may still differ in size: checkpoints pad the embedding matrix
to a multiple of 64 or 128 (Qwen2.5-0.5B has 151,936 rows, Qwen2.5-7B and larger 152,064, with one tokenizer
of 151,665 tokens). The padded rows are never produced, so the pair works: the draft proposes tokens within
the target's vocabulary (`VocabMap.draft_scores_for_target`) and the target verifies over its own. Should the
target still produce a token the draft has no row for (or the prompt hold one), the draft reads a stand-in token
in its place (`VocabMap.ids_for_draft`, with a warning): its proposals get worse there, the output stays the
target's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..utils.warnings import warn_once

if TYPE_CHECKING:
    from transformers import PreTrainedModel

PADDING_TOLERANCE = 0.02
"""Without tokenizers to compare, output sizes that differ by at most this fraction count as padding of one
tokenizer's vocabulary (Qwen2.5: 0.08%); larger differences are taken for different tokenizers."""


def output_vocab_size(model: PreTrainedModel) -> int:
    """The size of the model's logits.

    Args:
        model (`PreTrainedModel`): any causal language model.

    Returns:
        `int`: its output layer's width, else the config's vocab size.
    """
    embeddings = model.get_output_embeddings()
    if embeddings is not None and hasattr(embeddings, "out_features"):
        return int(embeddings.out_features)
    if embeddings is not None and hasattr(embeddings, "weight"):
        return int(embeddings.weight.shape[0])
    return int(model.config.get_text_config().vocab_size)


@dataclass(frozen=True)
class VocabMap:
    """The target's and the draft's output sizes; both models' distributions live in the target's vocabulary."""

    target_size: int
    draft_size: int
    stand_in: int = 0  # the token the draft reads in place of a target token it has no row for

    @property
    def shared_size(self) -> int:
        return min(self.target_size, self.draft_size)

    def draft_scores_for_target(self, scores: torch.Tensor) -> torch.Tensor:
        """Draft scores `(..., draft_size)` as scores over the target's vocabulary `(..., target_size)`.

        Rows the target lacks are dropped (the draft then never proposes them); rows only the target has get
        -inf (probability 0 under the draft). The draft samples from, and speculative sampling compares with,
        exactly these scores.
        """
        if self.draft_size == self.target_size:
            return scores
        if self.draft_size > self.target_size:
            return scores[..., : self.target_size]
        pad = scores.new_full((*scores.shape[:-1], self.target_size - self.draft_size), float("-inf"))
        return torch.cat([scores, pad], dim=-1)


    def ids_for_draft(self, ids: torch.LongTensor) -> torch.LongTensor:
        """Token ids of the target's vocabulary as the draft can read them: ids past the draft's rows become
        `stand_in` (a warning says so once; one host synchronisation, only when the draft has fewer rows)."""
        if self.draft_size >= self.target_size:
            return ids
        outside = ids >= self.draft_size
        if bool(outside.any()):
            warn_once(f"draft-vocab-{self.draft_size}-{self.target_size}",
                      f"Token id {int(ids[outside][0])} is outside the draft's vocabulary ({self.draft_size} rows; the "
                      f"target has {self.target_size}): the draft reads token {self.stand_in} in its place. The output "
                      "stays the target's; speculation is weaker around such tokens.")
            return torch.where(outside, torch.full_like(ids, self.stand_in), ids)
        return ids


def stand_in_token(draft: PreTrainedModel, tokenizer=None) -> int:
    """The token the draft reads in place of target tokens it lacks: the tokenizer's unknown token, else the
    draft's padding or EOS token, else 0."""
    candidates = [getattr(tokenizer, "unk_token_id", None), draft.generation_config.pad_token_id,
                  draft.generation_config.eos_token_id, draft.config.get_text_config().pad_token_id]
    for token in candidates:
        token = token[0] if isinstance(token, (list, tuple)) and token else token
        if isinstance(token, int) and 0 <= token < output_vocab_size(draft):
            return token
    return 0


def vocab_map(target: PreTrainedModel, draft: PreTrainedModel, assistant_tokenizer=None) -> VocabMap:
    """The pair's vocabulary map (no checks: `check_pair` makes them, once per call).

    Args:
        target (`PreTrainedModel`): the target model.
        draft (`PreTrainedModel`): the draft model.
        assistant_tokenizer (optional): the draft's tokenizer; its unknown token is the draft's stand-in token.

    Returns:
        `VocabMap`: both output sizes and the draft's stand-in token.
    """
    return VocabMap(output_vocab_size(target), output_vocab_size(draft), stand_in_token(draft, assistant_tokenizer))


def check_pair(target: PreTrainedModel, draft: PreTrainedModel, tokenizer=None, assistant_tokenizer=None) -> VocabMap:
    """Check that a draft and a target can be used together; run once per generate() call.

    Decoder-only models are required. The vocabularies must be one tokenizer's: compared directly when both
    tokenizers are given, otherwise inferred from the output sizes (equal, or differing only by padding).

    Args:
        target (`PreTrainedModel`): the target model.
        draft (`PreTrainedModel`): the draft model.
        tokenizer (*optional*): the target's tokenizer.
        assistant_tokenizer (*optional*): the draft's tokenizer.

    Returns:
        `VocabMap`: the pair's vocabulary map.

    Raises:
        ValueError: an encoder-decoder model, or vocabularies of different tokenizers.
    """
    for role, model in (("target", target), ("draft", draft)):
        if getattr(model.config, "is_encoder_decoder", False):
            raise ValueError(f"hf_specdecpp supports decoder-only models; the {role} ({type(model).__name__}) is an "
                             "encoder-decoder model.")
    vocab = vocab_map(target, draft, assistant_tokenizer)
    if tokenizer is not None and assistant_tokenizer is not None:
        check_tokenizers(tokenizer, assistant_tokenizer)
        if len(tokenizer) > vocab.shared_size:
            raise ValueError(f"The tokenizer has {len(tokenizer)} tokens but the draft's output layer only "
                             f"{vocab.draft_size} and the target's {vocab.target_size} rows.")
        return vocab
    if vocab.target_size != vocab.draft_size:
        difference = abs(vocab.target_size - vocab.draft_size) / max(vocab.target_size, vocab.draft_size)
        if difference > PADDING_TOLERANCE:
            raise ValueError(
                f"The draft model's vocabulary ({vocab.draft_size} tokens) differs from the target's "
                f"({vocab.target_size} tokens): they look like different tokenizers. SpecDec++ needs a draft and a "
                "target that share one tokenizer; if they do (and only the embedding padding differs), pass "
                "tokenizer= and assistant_tokenizer= to generate() so it can be checked.")
    return vocab


def check_tokenizers(tokenizer, assistant_tokenizer) -> None:
    """When both tokenizers are given, they must be the same vocabulary."""
    if tokenizer is None or assistant_tokenizer is None:
        return
    if tokenizer.get_vocab() != assistant_tokenizer.get_vocab():
        raise ValueError(
            "The draft's tokenizer differs from the target's. SpecDec++ needs a draft and a target that share "
            "one tokenizer (transformers' universal assisted generation handles different tokenizers: call "
            "generate() with assistant_model=, tokenizer= and assistant_tokenizer= and without hf_specdecpp).")
