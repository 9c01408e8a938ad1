"""SpecDec++ inside vLLM: the `custom_class` proposer, offline (`LLM`) here, the same config for `vllm serve`.

    pip install "hf-specdecpp[vllm]"     # vLLM in an environment of its own (it pins its transformers)
    python examples/vllm_serve.py [--tiny] [--method specdecpp|svip] [--max-new-tokens N]

Without `--tiny` the real pair (Qwen2.5-Coder 0.5B drafts for 1.5B, the shipped head) from
`~/.cache/hf_specdecpp` (`hf-specdecpp fetch-models`); `--tiny` writes a tiny pair and an untrained head to a
temporary folder (offline, seconds). The example prints the equivalent `vllm serve` command, generates for a few
prompts with and without speculation, and shows that greedy output is unchanged and how long the drafts were.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import tempfile
from pathlib import Path

PROPOSERS = {"specdecpp": "hf_specdecpp.integration.vllm_proposer.SpecDecPPProposer",
             "svip": "hf_specdecpp.integration.vllm_proposer.SVIPProposer"}
CACHE = Path(os.environ.get("HF_SPECDECPP_CACHE") or Path.home() / ".cache" / "hf_specdecpp").expanduser()


def models(tiny: bool, folder: Path) -> tuple[str, str, dict, list]:
    """(target, draft, HF_SPECDECPP_VLLM settings, prompts) for the tiny or the real pair."""
    if tiny:
        from hf_specdecpp.integration.vllm_testing import save_tiny_vllm_pair, tiny_vllm_head

        target, draft = save_tiny_vllm_pair(folder / "pair")
        tiny_vllm_head().save_pretrained(folder / "head")
        prompts = [{"prompt_token_ids": [7 + i, 20, 30 + i, 40]} for i in range(3)]
        return target, draft, {"draft": draft, "head": str(folder / "head"), "threshold": 0.8}, prompts
    target, draft = str(CACHE / "qwen2.5-coder-1.5b-instruct"), str(CACHE / "qwen2.5-coder-0.5b-instruct")
    prompts = [{"prompt": f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"} for q in
               ("Write a Python function that checks whether a number is prime.",
                "Write a Python function that reverses a linked list.")]
    return target, draft, {"draft": draft}, prompts


def generate(target: str, spec: dict | None, prompts: list, max_tokens: int, tiny: bool) -> tuple[list, dict]:
    from vllm import LLM, SamplingParams

    llm = LLM(target, enforce_eager=True, max_model_len=512, speculative_config=spec, disable_log_stats=False,
              seed=0, **({"dtype": "float32"} if tiny else {}))
    outs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=max_tokens), use_tqdm=False)
    metrics = {m.name.split(":")[-1]: m.value for m in llm.get_metrics() if "spec_decode_num" in m.name
               and isinstance(getattr(m, "value", None), (int, float))}
    llm.llm_engine.engine_core.shutdown()
    return [list(o.outputs[0].token_ids) for o in outs], metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny pair and head (offline, seconds)")
    parser.add_argument("--method", choices=sorted(PROPOSERS), default="specdecpp")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--k", type=int, default=8, help="num_speculative_tokens: the longest draft")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    with tempfile.TemporaryDirectory() as tmp:
        target, draft, settings, prompts = models(args.tiny, Path(tmp))
        spec = {"method": "custom_class", "model": PROPOSERS[args.method], "num_speculative_tokens": args.k}
        os.environ["HF_SPECDECPP_VLLM"] = json.dumps(settings)
        print("== the same with vllm serve:")
        print(f"HF_SPECDECPP_VLLM={shlex.quote(json.dumps(settings))} vllm serve {target} "
              f"--speculative-config {shlex.quote(json.dumps(spec))}")
        speculative, metrics = generate(target, spec, prompts, args.max_new_tokens, args.tiny)
        plain, _ = generate(target, None, prompts, args.max_new_tokens, args.tiny)
    drafts = metrics.get("spec_decode_num_drafts", 0)
    print(f"== {args.method}: {metrics.get('spec_decode_num_accepted_tokens', 0):.0f} of "
          f"{metrics.get('spec_decode_num_draft_tokens', 0):.0f} drafted tokens accepted in {drafts:.0f} drafts "
          f"(mean draft length {metrics.get('spec_decode_num_draft_tokens', 0) / max(drafts, 1):.2f})")
    print(f"== greedy output equal to vLLM without speculation: {speculative == plain}")


if __name__ == "__main__":
    main()
