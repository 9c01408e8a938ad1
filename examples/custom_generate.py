"""The patch-free route: transformers' public `custom_generate=` hook runs SpecDec++ as the decoding method.

    python examples/custom_generate.py [--tiny]

No import of hf_specdecpp patches anything here: the method object itself is the decoding method. transformers
passes neither `assistant_model` nor `streamer` to a custom decoding method, so both go to the method object.
"""

from __future__ import annotations

from transformers import TextStreamer

from common import arguments, chat_inputs, default_prompt, load
from hf_specdecpp import SpecDecPPMethod


def main() -> None:
    args = arguments(__doc__, max_new_tokens=64).parse_args()
    setup = load(args)
    inputs = chat_inputs(setup, [{"role": "user", "content": default_prompt(setup, "What does a KV cache store?")}])
    streamer = TextStreamer(setup.tokenizer, skip_prompt=True, skip_special_tokens=True)
    method = SpecDecPPMethod(head=setup.head, draft_model=setup.draft, streamer=streamer)
    out = setup.target.generate(**inputs, custom_generate=method, max_new_tokens=args.max_new_tokens,
                                do_sample=False, return_dict_in_generate=True)
    print("\n==", out.speculation_stats.summary())


if __name__ == "__main__":
    main()
