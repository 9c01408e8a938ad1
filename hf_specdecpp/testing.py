"""Tiny draft/target pairs built from configs, with a word-level tokenizer, for tests and the offline demo.

The draft is a noisy copy of the target, so the two agree often but not always and acceptance varies.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

ARCHITECTURES = ("llama", "qwen2", "qwen3", "mistral", "phi3", "granite", "gemma2", "gemma3_text", "lfm2")
"""Architectures `tiny_config` builds (any model_type AutoConfig knows usually works too)."""

_EXTRA = {
    "gemma2": dict(head_dim=8, query_pre_attn_scalar=8, final_logit_softcapping=None, attn_logit_softcapping=None),
    "gemma3_text": dict(head_dim=8, query_pre_attn_scalar=8, final_logit_softcapping=None, attn_logit_softcapping=None),
    "qwen3": dict(head_dim=8),
    "lfm2": dict(conv_L_cache=3, block_auto_adjust_ff_dim=False),
}


def tiny_config(arch: str = "llama", vocab_size: int = 96, hidden_size: int = 32, num_layers: int = 2, **overrides):
    """A small config of any decoder architecture `AutoConfig` knows (eos 1, bos 0, pad 0).

    `overrides` set anything else, e.g. `sliding_window=4` (Mistral, Phi-3, Gemma-2/3), `use_sliding_window=True`
    (Qwen2/3), `layer_types=[...]` (hybrid LFM2: "conv" and "full_attention").
    """
    from transformers import AutoConfig

    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    common.update(_EXTRA.get(arch, {}))
    common.update(overrides)
    try:
        return AutoConfig.for_model(arch, **common)
    except ValueError as err:
        raise ValueError(f"Unknown tiny architecture {arch!r}; e.g. one of {ARCHITECTURES} ({err})") from None


def tiny_pair(
    arch: str = "llama",
    vocab_size: int = 96,
    hidden_size: int = 32,
    num_layers: int = 2,
    noise: float = 0.05,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    **overrides,
) -> tuple[PreTrainedModel, PreTrainedModel]:
    """(target, draft): a random tiny target and a draft that is the target plus Gaussian weight noise.

    `noise` is relative to each weight tensor's standard deviation; 0 gives a draft identical to the target.
    `overrides` go to `tiny_config` (e.g. a sliding window). With the environment variable
    `HF_SPECDECPP_TEST_DEVICE` (e.g. "cuda") both models are placed on that device.
    """
    config = tiny_config(arch, vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers, **overrides)
    torch.manual_seed(seed)
    target = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    # Random init gives nearly flat logits; sharpen the output layer so greedy/sampled text has structure.
    with torch.no_grad():
        target.get_output_embeddings().weight.mul_(8.0)
    draft = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    draft.load_state_dict(target.state_dict())
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in draft.parameters():
            if param.numel() > 1 and noise > 0:
                scale = param.float().std().item() or 1.0
                noise_values = torch.randn(param.shape, generator=generator, device="cpu") * noise * scale
                param.add_(noise_values.to(device=param.device, dtype=param.dtype))
    device = os.environ.get("HF_SPECDECPP_TEST_DEVICE")
    for model in (target, draft):
        model.generation_config.pad_token_id = 0
        model.generation_config.eos_token_id = 1
        model.generation_config.bos_token_id = 0
        if device:
            model.to(device)
    return target, draft

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


def tiny_head(hidden_size: int = 32, seed: int = 0):
    """An untrained producing-state acceptance head for the tiny pair whose predictions follow the drafted token's
    draft probability (so rounds vary in length); for examples and smoke tests."""
    from .head import PRODUCING_STATE, AcceptanceHead

    torch.manual_seed(seed)
    head = AcceptanceHead(hidden_size, 1, input_state=PRODUCING_STATE, use_confidence_features=True)
    with torch.no_grad():
        head.feature_classifier.weight.copy_(torch.tensor([[3.0, 0.0, -1.0]]))
        head.feature_classifier.bias.fill_(2.0)
    return head.eval()
