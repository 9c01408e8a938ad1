"""Real-pair check: SpecDec++ greedy output equals the target's greedy output, with round statistics.

Usage: python benchmarks/real_pair_check.py HEAD_DIR [float32|bfloat16]  (after `hf-specdecpp fetch-models`)
"""
import sys
import time

import torch
import hf_specdecpp  # noqa: F401  (adds candidate_generator= to generate())
from hf_specdecpp import AcceptanceHead, SpecDecPPMethod
from hf_specdecpp.assets import load_pair
from hf_specdecpp.assets.prompts import chat_prompt

head_dir = sys.argv[1]
dtype = torch.float32 if (len(sys.argv) < 3 or sys.argv[2] == "float32") else torch.bfloat16
target, draft, tok = load_pair(dtype=dtype)
head = AcceptanceHead.from_pretrained(head_dir)
prompts = ["Write a Python function that checks whether a number is prime.",
           "Explain in two sentences what a hash map is."]
for text in prompts:
    inputs = tok(chat_prompt(tok, text), return_tensors="pt")
    kw = dict(max_new_tokens=64, do_sample=False)
    t0 = time.perf_counter(); ref = target.generate(**inputs, **kw); t_ref = time.perf_counter() - t0
    gen = SpecDecPPMethod(head=head)
    t0 = time.perf_counter(); out = target.generate(**inputs, assistant_model=draft, candidate_generator=gen, **kw)
    t_spec = time.perf_counter() - t0
    print("PROMPT:", text)
    print("OUTPUT:", tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[:300].replace("\n", "\\n"))
    print("identical to target greedy:", torch.equal(out, ref), "| dtype", dtype, "| h =", gen.threshold)
    print("stats:", gen.stats.summary())
    print("candidate lengths:", gen.stats.candidate_lengths)
    print(f"time: target alone {t_ref:.1f}s, SpecDec++ {t_spec:.1f}s (single run)")
