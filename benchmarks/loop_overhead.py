"""Where a generate() call's time goes: the target's and the draft's forward passes, and everything else.

    python benchmarks/loop_overhead.py [--repeats 2] [--max-new-tokens 48]

Uses the cached real pair (`hf-specdecpp fetch-models`, float32, FewRowLinear) and the shipped greedy head. Forward
hooks time every pass of each model; "other" is the call's time minus both sums: the drafting loop, the
head, transformers' verification and cache handling. Target alone, fixed K = 3 and SpecDec++ alternate per repeat.
"""

from __future__ import annotations

import argparse
import time

import torch

from hf_specdecpp import FixedKMethod, SpecDecPPMethod, load_shipped_head
from hf_specdecpp.assets import load_pair
from hf_specdecpp.assets.prompts import chat_prompt
from hf_specdecpp.bench.calls import decoding_kwargs

PROMPT = ("Write a Python function `merge_intervals(intervals)` that merges overlapping intervals and returns "
          "them sorted. Include a docstring.")


def hook_timer(model: torch.nn.Module, sink: list[float]) -> None:
    """Append the duration of every forward pass of `model` to `sink`."""
    start: list[float] = []
    model.register_forward_pre_hook(lambda *_: start.append(time.perf_counter()))
    model.register_forward_hook(lambda *_: sink.append(time.perf_counter() - start.pop()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()

    target, draft, tokenizer = load_pair(torch.float32, fast_cpu_linear=True)
    enc = tokenizer(chat_prompt(tokenizer, PROMPT), return_tensors="pt", add_special_tokens=False)
    passes: dict[str, list[float]] = {"target": [], "draft": []}
    hook_timer(target, passes["target"])
    hook_timer(draft, passes["draft"])
    generators = {"fixed-K3": FixedKMethod(num_candidates=3),
                  "specdec++": SpecDecPPMethod(head=load_shipped_head())}
    kwargs = dict(enc, max_new_tokens=args.max_new_tokens, **decoding_kwargs(sampling=False))
    for _ in range(args.repeats):
        for name in ["target", *generators]:
            for sink in passes.values():
                sink.clear()
            extra = {} if name == "target" else {"assistant_model": draft, "candidate_generator": generators[name]}
            start = time.perf_counter()
            out = target.generate(**kwargs, **extra)
            elapsed = time.perf_counter() - start
            tokens = out.shape[1] - enc["input_ids"].shape[1]
            t, d = sum(passes["target"]), sum(passes["draft"])
            print(f"{name}: {elapsed:.2f} s for {tokens} tokens; target {len(passes['target'])} passes {t:.2f} s; "
                  f"draft {len(passes['draft'])} passes {d:.2f} s; other {elapsed - t - d:.2f} s", flush=True)


if __name__ == "__main__":
    main()
