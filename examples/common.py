"""What the examples share: loading the real pair (or tiny stand-ins with --tiny) with the right device and dtype."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch


@dataclass
class Setup:
    target: torch.nn.Module
    draft: torch.nn.Module
    tokenizer: object
    head: object  # the acceptance head for the decoding the example uses
    tiny: bool


def arguments(description: str, **defaults) -> argparse.ArgumentParser:
    """The options every example takes: --tiny, --device, --dtype, --max-new-tokens."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tiny", action="store_true", help="tiny random models (offline, seconds) instead of the "
                                                            "real Qwen2.5-Coder 0.5B -> 1.5B pair")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                        help="default: bfloat16 on a GPU and on CPUs with native bf16 (AVX512-BF16, AMX), else "
                             "float32 (fast there with FewRowLinear); compare outputs token for token in float32")
    parser.add_argument("--max-new-tokens", type=int, default=defaults.get("max_new_tokens", 96))
    return parser


def load(args, sampling: bool = False) -> Setup:
    """The pair, its tokenizer and the shipped head for greedy decoding (or for sampling at temperature 0.7)."""
    import hf_specdecpp  # noqa: F401  (adds candidate_generator= to generate())

    if args.tiny:
        from hf_specdecpp.testing import tiny_head, tiny_pair, tiny_tokenizer

        target, draft = tiny_pair("llama", noise=0.03, seed=1)
        with torch.no_grad():  # peaked distributions, so that the tiny draft is often right
            target.get_output_embeddings().weight.mul_(5.0)
            draft.get_output_embeddings().weight.mul_(5.0)
        return Setup(target, draft, tiny_tokenizer(), tiny_head(), True)
    from hf_specdecpp.assets import load_pair
    from hf_specdecpp.head.shipped import default_head_name, load_shipped_head

    from hf_specdecpp.core.device import default_dtype

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype) if args.dtype else default_dtype(device)
    target, draft, tokenizer = load_pair(dtype=dtype, device=device)
    return Setup(target, draft, tokenizer, load_shipped_head(default_head_name(sampling)), False)


def chat_inputs(setup: Setup, messages: list[dict]):
    """Chat-template inputs on the target's device."""
    inputs = setup.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
    return {k: v.to(setup.target.device) for k, v in inputs.items()}


def default_prompt(setup: Setup, real: str) -> str:
    return "w12 w40 w41 w77 w30" if setup.tiny else real
