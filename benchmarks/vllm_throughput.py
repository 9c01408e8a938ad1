"""Tokens/s of vLLM (CPU build) on the real pair at 1, 4 and 16 concurrent requests: no speculation, vLLM's own
draft-model speculation at fixed K, ngram, and the hf_specdecpp proposers (SpecDec++ with the shipped head,
SVIP).

    python benchmarks/vllm_throughput.py --python /work/venv-vllm/bin/python --out benchmarks/vllm

Every configuration runs in a process of its own (one engine in memory at a time) and measures, after a warm-up
(SpecDec++'s online re-calibration happens there), greedy generation of `--tokens` tokens (ignore_eos) per
request: at concurrency 1 `--prompts` requests one after the other, at concurrency c > 1 c requests submitted
together. Prompts: HumanEval tasks 0-15 in the target's chat template. The parent writes `results.json`,
`table.md` and `throughput.png`. Runs with any Python that has matplotlib; the engines run with `--python`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("HF_SPECDECPP_CACHE") or Path.home() / ".cache" / "hf_specdecpp").expanduser()
TARGET = CACHE / "qwen2.5-coder-1.5b-instruct"
DRAFT = CACHE / "qwen2.5-coder-0.5b-instruct"
PROPOSERS = "hf_specdecpp.integration.vllm_proposer."
NAMES = ("none", "draft-k2", "draft-k4", "ngram-k4", "specdecpp", "specdecpp-shipped", "svip")
SETTINGS = {"specdecpp-shipped": {"recalibrate": "never"}}  # the shipped policy as it is (h = 0.25)


def speculative_config(name: str, draft: str) -> dict | None:
    return {
        "none": None,
        "draft-k2": {"model": draft, "num_speculative_tokens": 2},
        "draft-k4": {"model": draft, "num_speculative_tokens": 4},
        "ngram-k4": {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 3, "prompt_lookup_min": 1},
        "specdecpp": {"method": "custom_class", "model": PROPOSERS + "SpecDecPPProposer", "num_speculative_tokens": 8},
        "specdecpp-shipped": {"method": "custom_class", "model": PROPOSERS + "SpecDecPPProposer",
                              "num_speculative_tokens": 8},
        "svip": {"method": "custom_class", "model": PROPOSERS + "SVIPProposer", "num_speculative_tokens": 8},
    }[name]


def prompts(count: int, target: str) -> list[str]:
    from transformers import AutoTokenizer

    from hf_specdecpp.assets.prompts import chat_prompt, humaneval_prompts

    tokenizer = AutoTokenizer.from_pretrained(target)
    return [chat_prompt(tokenizer, p.text) for p in humaneval_prompts(range(count))]


def run_one(name: str, args: argparse.Namespace) -> dict:
    """One configuration in this process: start the engine, warm up, time every concurrency."""
    from vllm import LLM, SamplingParams

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB: 37k tokens of the 1.5B target's cache
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # a shared machine: no pinning
    trace = Path(args.out) / f"trace-{name}.jsonl"
    trace.unlink(missing_ok=True)
    # SpecDec++ re-calibrates online after 12 timed steps: within the warm-up
    settings = {"draft": args.draft, "trace": str(trace), "calibration_steps": 12} | SETTINGS.get(name, {})
    os.environ["HF_SPECDECPP_VLLM"] = json.dumps(settings | ({"head": args.head} if args.head else {}))
    spec = speculative_config(name, args.draft)
    started = time.perf_counter()
    llm = LLM(args.target, enforce_eager=True, max_model_len=args.max_model_len, speculative_config=spec, seed=0,
              disable_log_stats=False)
    load_s = time.perf_counter() - started
    texts = prompts(max(args.concurrency + [args.prompts]), args.target)
    params = SamplingParams(temperature=0.0, max_tokens=args.tokens, ignore_eos=True)
    llm.generate(texts[-2:], SamplingParams(temperature=0.0, max_tokens=args.warmup, ignore_eos=True), use_tqdm=False)
    for text in texts[:2]:
        llm.generate([text], SamplingParams(temperature=0.0, max_tokens=args.warmup, ignore_eos=True),
                     use_tqdm=False)
    result = {"config": name, "speculative_config": spec, "load_s": load_s, "runs": {}}
    for concurrency in args.concurrency:
        before, traced = _spec_metrics(llm), _trace_lines(trace)
        calls = [[t] for t in texts[: args.prompts]] if concurrency == 1 else [texts[:concurrency]]
        tokens, seconds = 0, 0.0
        for call in calls:
            t0 = time.perf_counter()
            outs = llm.generate(call, params, use_tqdm=False)
            seconds += time.perf_counter() - t0
            tokens += sum(len(o.outputs[0].token_ids) for o in outs)
        after = _spec_metrics(llm)
        result["runs"][str(concurrency)] = {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
                                            "spec": {k: after.get(k, 0) - before.get(k, 0) for k in after}}
        steps = _trace_lines(trace)[len(traced):]
        if steps:  # our proposers: the share of the wall clock spent in propose(), and the drafts
            drafted = [n for step in steps for n in step["lengths"] if n]
            result["runs"][str(concurrency)]["proposer"] = {
                "steps": len(steps), "propose_s": sum(step["seconds"] for step in steps),
                "propose_share": sum(step["seconds"] for step in steps) / seconds,
                "draft_len_mean": sum(drafted) / max(len(drafted), 1), "threshold": steps[-1].get("threshold"),
                "cap": steps[-1]["cap"]}
    if trace.is_file():
        result["proposer"] = _trace_summary(trace)
    return result


def _spec_metrics(llm) -> dict:
    return {m.name.split(":")[-1]: m.value for m in llm.get_metrics()
            if "spec_decode" in m.name and isinstance(getattr(m, "value", None), (int, float))}


def _trace_lines(trace: Path) -> list[dict]:
    return [json.loads(line) for line in trace.read_text().splitlines()] if trace.is_file() else []


def _trace_summary(trace: Path) -> dict:
    """What the proposer spent per step and drafted, from its trace (after the warm-up's calibration)."""
    steps = [json.loads(line) for line in trace.read_text().splitlines()]
    drafted = [n for s in steps for n in s["lengths"] if n]
    return {"steps": len(steps), "propose_s_mean": sum(s["seconds"] for s in steps) / max(len(steps), 1),
            "draft_len_mean": sum(drafted) / max(len(drafted), 1), "cap_last": steps[-1]["cap"] if steps else None,
            "threshold_last": steps[-1].get("threshold") if steps else None}


def table(results: list[dict], concurrency: list[int]) -> str:
    lines = ["| configuration | " + " | ".join(f"{c} concurrent (tok/s)" for c in concurrency)
             + " | accepted / drafted (1 concurrent) |",
             "|---|" + "---:|" * (len(concurrency) + 1)]
    for r in results:
        spec = r["runs"][str(concurrency[0])]["spec"]
        accepted, drafted = (spec.get(f"spec_decode_num_{k}_tokens", 0) for k in ("accepted", "draft"))
        rate = f"{accepted:.0f} / {drafted:.0f}" if spec else "-"
        cells = [f"{r['runs'][str(c)]['tokens_per_s']:.2f}" for c in concurrency]
        lines.append(f"| {r['config']} | " + " | ".join(cells) + f" | {rate} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], concurrency: list[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        xs = [j + i * width for j in range(len(concurrency))]
        ax.bar(xs, [r["runs"][str(c)]["tokens_per_s"] for c in concurrency], width, label=r["config"])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(concurrency))], [f"{c} concurrent" for c in concurrency])
    ax.set_ylabel("generated tokens / s")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/vllm")
    parser.add_argument("--python", default=sys.executable, help="the Python of the vLLM venv")
    parser.add_argument("--configs", default=",".join(NAMES))
    parser.add_argument("--target", default=str(TARGET))
    parser.add_argument("--draft", default=str(DRAFT))
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--head", default=None, help="SpecDec++'s head (default: the shipped one)")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--prompts", type=int, default=3, help="requests at concurrency 1 (one after another)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=32)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.one:
        result = run_one(args.one, args)
        (out / f"result-{args.one}.json").write_text(json.dumps(result, indent=1))
        return
    results = []
    for name in args.configs.split(","):  # results are written after every configuration: a cut-off run keeps them
        load = os.getloadavg()
        command = [args.python, __file__, "--one", name, "--out", args.out, "--prompts", str(args.prompts),
                   "--tokens", str(args.tokens), "--warmup", str(args.warmup), "--target", args.target,
                   "--draft", args.draft, "--max-model-len", str(args.max_model_len),
                   "--concurrency", ",".join(map(str, args.concurrency))]
        command += ["--head", args.head] if args.head else []
        subprocess.run(command, check=True)
        result = json.loads((out / f"result-{name}.json").read_text())
        result["load_before"] = load
        results.append(result)
        machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                   "load_end": os.getloadavg()}
        (out / "results.json").write_text(json.dumps({"machine": machine, "args": vars(args), "results": results},
                                                     indent=1))
        (out / "table.md").write_text(table(results, args.concurrency))
        print(table(results, args.concurrency), flush=True)
    try:
        plot(results, args.concurrency, out / "throughput.png",
             f"vLLM (CPU): {Path(args.draft).name} -> {Path(args.target).name}, greedy")
    except ImportError:  # the vLLM venv may lack matplotlib: the table and results are written already
        print(f"matplotlib is not installed in {sys.executable}: no throughput.png (results.json and table.md "
              f"are in {out})")


if __name__ == "__main__":
    main()
