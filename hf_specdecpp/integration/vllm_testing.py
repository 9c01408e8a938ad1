"""A tiny draft/target pair that vLLM's CPU backend can run, for the vLLM tests and `examples/vllm_serve.py --tiny`.

vLLM's CPU attention refuses small head sizes (head_dim 16 fails), so the pair has head_dim 64 (hidden 128, two
query heads, one key/value head); otherwise it is `hf_specdecpp.testing.tiny_pair` with its word-level tokenizer.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..testing import tiny_pair, tiny_tokenizer

TINY_SHAPE = dict(hidden_size=128, num_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=64)
TINY_VOCAB = 96


def save_tiny_vllm_pair(directory: str | os.PathLike, noise: float = 0.05, seed: int = 0) -> tuple[str, str]:
    """Write the tiny target and draft (with the tokenizer) to `directory/{target,draft}` unless already there.

    Args:
        directory: where to write the two model folders.
        noise: the draft's weight noise relative to the target (0: the draft equals the target).
        seed: the random seed of the weights.

    Returns:
        The folders of the target and the draft.
    """
    directory = Path(directory)
    paths = directory / "target", directory / "draft"
    if all((p / "config.json").is_file() for p in paths):
        return str(paths[0]), str(paths[1])
    target, draft = tiny_pair("llama", vocab_size=TINY_VOCAB, noise=noise, seed=seed, **TINY_SHAPE)
    for path, model in zip(paths, (target, draft)):
        model.save_pretrained(path)
        tiny_tokenizer(TINY_VOCAB).save_pretrained(path)
    return str(paths[0]), str(paths[1])


def tiny_vllm_head():
    """An untrained producing-state head for the tiny vLLM pair whose predictions spread around 0.5 with the drafted
    token's draft log-probability (the pair's draft is unsure: log q is about -1.4 to -2.3), so that SpecDec++ at
    h = 0.5 stops different requests after different numbers of tokens."""
    from ..testing import tiny_head

    head = tiny_head(hidden_size=TINY_SHAPE["hidden_size"])
    with torch.no_grad():
        head.feature_classifier.weight.copy_(torch.tensor([[3.0, 0.0, 0.0]]))
        head.feature_classifier.bias.fill_(5.4)
    return head
