"""What the examples share: loading the real pair (or tiny stand-ins with --tiny) with the right device and dtype."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import torch


TINY_ENV = "HF_SPECDECPP_DEMO_TINY"
"""Set to 1 to run every example on tiny models without --tiny: CI runs the README's first command as written."""


def tiny_from_environment() -> bool:
    """Whether `HF_SPECDECPP_DEMO_TINY` asks for tiny models (1, true, yes; 0, false, no or unset do not)."""
    value = os.environ.get(TINY_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise SystemExit(f"{TINY_ENV}={os.environ[TINY_ENV]!r}: use 1 (tiny models) or 0 (the real pair)")


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
    parser.add_argument("--tiny", action="store_true", default=tiny_from_environment(),
                        help=f"tiny random models (offline, seconds) instead of the real Qwen2.5-Coder 0.5B -> 1.5B "
                             f"pair; also with {TINY_ENV}=1")
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


def compare_with_target(setup: Setup, reference: torch.Tensor, output: torch.Tensor, prompt_length: int,
                        label: str = "speculative decoding") -> str:
    """"True", or where the output first leaves the target's own greedy output and whether that is a near-tie.

    Speculative decoding verifies several tokens in one target pass; the target alone decodes one token per
    pass. In float32 both readings agree to about 1e-4 and the outputs are identical token for token. In bfloat16
    the logits themselves are rounded (to 0.125 near 16), so where the target's two best tokens lie within that
    rounding (`logit_rounding_tolerance`), the two readings may pick different ones and the texts go separate
    ways from there: both are the target's greedy output up to rounding.

    Args:
        setup: The loaded pair (the target's logits at the first difference are read again).
        reference: The target alone's sequences `(1, length)`.
        output: The speculative call's sequences `(1, length)`.
        prompt_length: Tokens of the prompt in both.
        label: What produced `output`, for the message.

    Returns:
        One line for the user.
    """
    from hf_specdecpp.methods.dyspec.probe import logit_rounding_tolerance

    if torch.equal(reference, output):
        return "True"
    ref, out = reference[0].tolist(), output[0].tolist()
    first = next((i for i, (a, b) in enumerate(zip(ref, out)) if a != b), min(len(ref), len(out)))
    if first >= min(len(ref), len(out)):
        lengths = (len(ref) - prompt_length, len(out) - prompt_length)
        return f"False: the same tokens, but one output is longer ({lengths[0]} vs {lengths[1]} new tokens)"
    with torch.no_grad():
        logits = setup.target(torch.tensor([ref[:first]], device=setup.target.device)).logits[0, -1].float()
    chosen, other = ref[first], out[first]
    gap = float(logits[chosen] - logits[other])
    dtype = next(setup.target.parameters()).dtype
    tolerance = logit_rounding_tolerance(dtype, float(logits.abs().max()))
    words = [repr(setup.tokenizer.decode([t])) for t in (chosen, other)]
    where = (f"False: first difference at new token {first - prompt_length + 1}: the target alone chose {words[0]}, "
             f"{label} {words[1]}; the target's own logits put them {abs(gap):.3g} apart")
    name = str(dtype).removeprefix("torch.")
    if abs(gap) <= tolerance:
        return (f"{where}, within {name} rounding ({tolerance:.3g} at this logit scale): a near-tie that a "
                "verification pass and the target's one-token steps round differently; the rest follows from it. "
                "With --dtype float32 the outputs are identical token for token.")
    return (f"{where}, more than {name} rounding ({tolerance:.3g}): not a near-tie. Please report this with the "
            "prompt and the command.")
