"""Target pass time by number of new tokens, with nn.Linear and with FewRowLinear (float32, CPU).

    python benchmarks/verify_cost.py [--tokens 1,2,3,4,8,16] [--threads 2]

Uses the cached Qwen2.5-Coder-1.5B-Instruct (`hf-specdecpp fetch-models`). A 200-token prompt is cached, then
the pass over k new tokens is timed (best of 3), both layer kinds on the same model, alternating per k.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM, DynamicCache

from hf_specdecpp.assets import fetch_models
from hf_specdecpp.core.cpu_linear import FewRowLinear, linear_layers


@torch.inference_mode()
def pass_time(model, prompt: torch.Tensor, k: int, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        cache = DynamicCache(config=model.config)
        model(prompt, past_key_values=cache, use_cache=True, logits_to_keep=1)
        new = torch.randint(100, 1000, (1, k))
        start = time.perf_counter()
        model(new, past_key_values=cache, use_cache=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", default="1,2,3,4,8,16")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    target = AutoModelForCausalLM.from_pretrained(fetch_models()["target"], dtype=torch.float32).eval()
    prompt = torch.randint(100, 1000, (1, 200), generator=torch.Generator().manual_seed(0))
    ks = [int(k) for k in args.tokens.split(",")]
    layers = [(parent, name, linear, FewRowLinear(linear)) for parent, name, linear in linear_layers(target)]
    rows = {False: [], True: []}
    for k in ks:
        for fast in (False, True):  # both layer kinds share the weights; switch them per k
            for parent, name, linear, few_row in layers:
                setattr(parent, name, few_row if fast else linear)
            rows[fast].append(pass_time(target, prompt, k))
    print("| new tokens | " + " | ".join(map(str, ks)) + " |")
    print("|---|" + "---|" * len(ks))
    for fast, label in ((False, "`nn.Linear`"), (True, "`FewRowLinear`")):
        print(f"| {label} | " + " | ".join(f"{t * 1000:.0f} ms" for t in rows[fast]) + " |")


if __name__ == "__main__":
    main()
