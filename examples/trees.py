"""DySpec draft trees next to SpecDec++ chains on one prompt: the same output, different rounds.

    python examples/trees.py [--tiny] [--budgets 4 8 16]

A tree drafts several continuations per round (up to `budget` nodes, best estimate first) and the target
checks all of them in ONE forward pass; greedy decoding keeps the longest path of target tokens. On a GPU a
wide verify pass costs about the same as a narrow one, which is where trees pay.

In float32 every line says "same as the target alone: True". In bfloat16 (the default on CPUs with native bf16)
a line may say False: the output then left the target's own greedy output at a near-tie of the target's logits
that bf16 rounds differently in one pass over a tree or chain than in one-token steps; the line says where.
"""

from __future__ import annotations

from common import arguments, chat_inputs, compare_with_target, default_prompt, load
from hf_specdecpp import DySpecMethod, SpecDecPPMethod


def main() -> None:
    parser = arguments(__doc__, max_new_tokens=64)
    parser.add_argument("--budgets", type=int, nargs="+", default=[4, 8, 16])
    args = parser.parse_args()
    setup = load(args)
    inputs = chat_inputs(setup, [{"role": "user", "content": default_prompt(setup, "Reverse a linked list in Python.")}])
    kwargs = dict(assistant_model=setup.draft, max_new_tokens=args.max_new_tokens, do_sample=False)
    reference = setup.target.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
    methods = {"SpecDec++ chain": SpecDecPPMethod(head=setup.head)}
    methods.update({f"DySpec tree, budget {b}": DySpecMethod(budget=b) for b in args.budgets})
    for name, method in methods.items():
        out = setup.target.generate(**inputs, candidate_generator=method, **kwargs)
        stats = method.stats
        same = compare_with_target(setup, reference, out, inputs["input_ids"].shape[1], name)
        print(f"== {name}: {stats.rounds} rounds, {stats.accepted_tokens / max(stats.rounds, 1):.2f} accepted per "
              f"round, {stats.draft_forwards} draft passes, {stats.target_forwards} target passes; same as the "
              f"target alone: {same}")


if __name__ == "__main__":
    main()
