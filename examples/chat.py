"""A multi-turn chat with SpecDec++, streaming every answer as it is generated.

    python examples/chat.py                       # interactive (an empty line ends the chat)
    python examples/chat.py --turns "Write a haiku about caches." "Now one about trees."
    python examples/chat.py --tiny --turns "w7 w8" "w9"

The conversation goes through the tokenizer's chat template; each turn appends the user message and the answer.
"""

from __future__ import annotations

from transformers import TextStreamer

from common import arguments, chat_inputs, load
from hf_specdecpp import SpecDecPPMethod


def main() -> None:
    parser = arguments(__doc__, max_new_tokens=128)
    parser.add_argument("--turns", nargs="*", help="user messages (default: read them from the terminal)")
    args = parser.parse_args()
    setup = load(args)
    method = SpecDecPPMethod(head=setup.head)
    streamer = TextStreamer(setup.tokenizer, skip_prompt=True, skip_special_tokens=True)
    messages: list[dict] = []
    turns = iter(args.turns) if args.turns is not None else iter(lambda: input("\nyou> "), "")
    for user in turns:
        print(f"\nyou> {user}" if args.turns is not None else "", end="")
        messages.append({"role": "user", "content": user})
        inputs = chat_inputs(setup, messages)
        print("\nassistant> ", end="", flush=True)
        out = setup.target.generate(**inputs, assistant_model=setup.draft, candidate_generator=method,
                                    streamer=streamer, max_new_tokens=args.max_new_tokens, do_sample=False)
        answer = setup.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        messages.append({"role": "assistant", "content": answer})
        print(f"[{method.stats.summary()}]")


if __name__ == "__main__":
    main()
