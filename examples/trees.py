"""DySpec draft trees next to SpecDec++ chains on one prompt: the same output, different rounds.

    python examples/trees.py [--tiny] [--budgets 4 8 16]

A tree drafts several continuations per round (up to `budget` nodes, best estimate first) and the target
checks all of them in ONE forward pass; greedy decoding keeps the longest path of target tokens. On a GPU a
wide verify pass costs about the same as a narrow one, which is where trees pay.
"""

from __future__ import annotations

import torch

from common import arguments, chat_inputs, default_prompt, load
from hf_specdecpp import DySpecCandidateGenerator, SpecDecPPCandidateGenerator


def main() -> None:
    parser = arguments(__doc__, max_new_tokens=64)
    parser.add_argument("--budgets", type=int, nargs="+", default=[4, 8, 16])
    args = parser.parse_args()
    setup = load(args)
    inputs = chat_inputs(setup, [{"role": "user", "content": default_prompt(setup, "Reverse a linked list in Python.")}])
    kwargs = dict(assistant_model=setup.draft, max_new_tokens=args.max_new_tokens, do_sample=False)
    reference = setup.target.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
    methods = {"SpecDec++ chain": SpecDecPPCandidateGenerator(head=setup.head)}
    methods.update({f"DySpec tree, budget {b}": DySpecCandidateGenerator(budget=b) for b in args.budgets})
    for name, method in methods.items():
        out = setup.target.generate(**inputs, candidate_generator=method, **kwargs)
        stats = method.stats
        print(f"== {name}: same as the target alone: {torch.equal(out, reference)}; {stats.rounds} rounds, "
              f"{stats.accepted_tokens / max(stats.rounds, 1):.2f} accepted per round, {stats.draft_forwards} draft "
              f"passes, {stats.target_forwards} target passes")


if __name__ == "__main__":
    main()
