"""Sampling with SpecDec++: the head trained for the decoding you use, and the target's distribution kept exactly.

    python examples/sampling.py [--tiny] [--temperature 0.7] [--samples 3]

Speculative sampling accepts a drafted token with probability min(1, p/q) and otherwise draws from the
residual, so every sample follows the target's own distribution (after temperature, top-k, top-p). The shipped
head for sampling was trained on temperature-0.7 acceptance labels; a head trained for greedy decoding would
stop drafting at the wrong places (the output would still be exact; the package warns).
"""

from __future__ import annotations

import torch

from common import arguments, chat_inputs, default_prompt, load
from hf_specdecpp import SpecDecPPMethod


def main() -> None:
    parser = arguments(__doc__, max_new_tokens=64)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()
    setup = load(args, sampling=True)
    inputs = chat_inputs(setup, [{"role": "user", "content": default_prompt(setup, "Name three uses of a hash map.")}])
    method = SpecDecPPMethod(head=setup.head)
    for i in range(args.samples):
        torch.manual_seed(i)
        out = setup.target.generate(**inputs, assistant_model=setup.draft, candidate_generator=method, do_sample=True,
                                    temperature=args.temperature, top_k=0, top_p=1.0,
                                    max_new_tokens=args.max_new_tokens)
        text = setup.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        print(f"== sample {i}: {text}\n   {method.stats.summary()}")


if __name__ == "__main__":
    main()
