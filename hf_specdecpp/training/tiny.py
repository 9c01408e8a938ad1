"""A tiny draft/target pair with a word-level tokenizer saved to disk, so every command runs offline in seconds."""

from __future__ import annotations

import os
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<' + m['role'] + '> ' + m['content'] + ' ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<assistant> ' }}{% endif %}"
)


def tiny_tokenizer(vocab_size: int = 96):
    """A word-level tokenizer over `<pad>` (0, also bos), `</s>` (1, eos), `<unk>` and words `w3`... ."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>", "<user>", "<assistant>", "<system>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for i in range(len(specials), vocab_size):
        vocab[f"w{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<pad>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_tiny_pair(directory: str | os.PathLike, noise: float = 0.05, seed: int = 0, vocab_size: int = 96,
                   hidden_size: int = 32, num_layers: int = 2, arch: str = "llama",
                   tokenizer_vocab_size: int | None = None) -> tuple[str, str]:
    """Save `hf_specdecpp.testing.tiny_pair(...)` and a tokenizer to `directory/{target,draft}`; return the paths."""
    from ..testing import tiny_pair

    directory = Path(directory)
    target, draft = tiny_pair(arch, vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers,
                              noise=noise, seed=seed)
    paths = []
    for name, model, tv in (("target", target, vocab_size), ("draft", draft, tokenizer_vocab_size or vocab_size)):
        path = directory / name
        model.save_pretrained(path)
        tiny_tokenizer(tv).save_pretrained(path)
        paths.append(str(path))
    return paths[0], paths[1]


def tiny_prompts(n: int, seed: int = 0, vocab_size: int = 96, min_len: int = 3, max_len: int = 12,
                 with_response: int = 0) -> list[dict]:
    """`n` random word prompts `{"prompt": "w7 w33 ..."}` (plus a random `response` of that many words)."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [f"w{rng.randrange(6, vocab_size)}" for _ in range(rng.randint(min_len, max_len))]
        rec = {"prompt": " ".join(words)}
        if with_response:
            rec["response"] = " ".join(f"w{rng.randrange(6, vocab_size)}" for _ in range(with_response))
        out.append(rec)
    return out
