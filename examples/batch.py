"""Several prompts in one generate() call: every row drafts as long as its own head predictions allow.

    python examples/batch.py [--tiny]

Prompts are left-padded (tokenizer padding_side="left") and passed with their attention mask; each row's output
is exactly what generate() gives for that prompt alone (greedy, float32), and rows finish on their own.
"""

from __future__ import annotations

from common import arguments, default_prompt, load
from hf_specdecpp import SpecDecPPMethod

PROMPTS = ["def fibonacci(n):", "Explain what a mutex is in one sentence.", "SELECT name FROM users WHERE"]


def main() -> None:
    args = arguments(__doc__, max_new_tokens=48).parse_args()
    setup = load(args)
    prompts = [default_prompt(setup, p) + ("" if not setup.tiny else f" w{20 + i}") for i, p in enumerate(PROMPTS)]
    setup.tokenizer.padding_side = "left"
    inputs = setup.tokenizer(prompts, return_tensors="pt", padding=True).to(setup.target.device)
    method = SpecDecPPMethod(head=setup.head)
    out = setup.target.generate(**inputs, assistant_model=setup.draft, candidate_generator=method,
                                max_new_tokens=args.max_new_tokens, do_sample=False, return_dict_in_generate=True)
    width = inputs["input_ids"].shape[1]
    for prompt, row, stats in zip(prompts, out.sequences, out.speculation_stats.rows):
        text = setup.tokenizer.decode(row[width:], skip_special_tokens=True)
        print(f"== {prompt!r} -> {text!r}\n   {stats.new_tokens} tokens in {stats.rounds} rounds, "
              f"{stats.accepted_tokens} drafts accepted of {stats.drafted_tokens}")
    print("== the whole batch:", out.speculation_stats.summary())


if __name__ == "__main__":
    main()
