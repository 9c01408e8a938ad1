"""Throughput of the training half: make-data (forward passes; generation), train, calibrate.

    python benchmarks/bench_training.py                      # tiny pair, seconds
    python benchmarks/bench_training.py --real --prompts 16 --max-new-tokens 128 --gen-prompts 4

--real uses the cached Qwen2.5-Coder 0.5B (draft) / 1.5B (target) pair from ~/.cache/hf_specdecpp (see
`hf-specdecpp fetch-models`). Prompts are synthetic ShareGPT-style chat records whose answers are Python
standard-library source snippets (no network needed). Prints tokens/s per stage and an extrapolation.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch


def synthetic_chat_records(n: int, seed: int = 0) -> list[dict]:
    import ast
    import random

    import collections, email, json as _json, logging, pathlib, textwrap  # noqa: E401 - sources of answers

    rng = random.Random(seed)
    funcs = []
    for mod in (collections, email, _json, logging, pathlib, textwrap, argparse, shutil, tempfile, inspect):
        try:
            tree = ast.parse(inspect.getsource(mod))
            src = inspect.getsource(mod)
        except (OSError, TypeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno > 6:
                funcs.append((mod.__name__, node.name, ast.get_source_segment(src, node)))
    rng.shuffle(funcs)
    out = []
    for i in range(n):
        mod, name, body = funcs[i % len(funcs)]
        out.append({"conversations": [
            {"from": "human", "value": f"Write the Python function `{name}` as it appears in the `{mod}` module."},
            {"from": "gpt", "value": f"```python\n{body}\n```"},
        ]})
    return out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", action="store_true", help="use the cached Qwen2.5-Coder 0.5B/1.5B pair")
    ap.add_argument("--prompts", type=int, default=None, help="prompts for the forward-pass (dataset) mode")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--gen-prompts", type=int, default=None, help="prompts for the generation mode (0 = skip)")
    ap.add_argument("--gen-tokens", type=int, default=None, help="max new tokens in generation mode")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--target-prompts", type=int, default=300, help="extrapolate to this many prompts")
    ap.add_argument("--target-tokens", type=int, default=256, help="... of this many tokens")
    ap.add_argument("--keep", default=None, help="keep the work folder here")
    return ap.parse_args()


def pair_and_records(args: argparse.Namespace, work: Path) -> tuple[str, str, list, int, int, int, int]:
    """(target, draft, records, prompts, tokens, generation prompts, generation tokens) for the real or tiny pair."""
    from hf_specdecpp.training import PromptRecord

    if args.real:
        cache = Path(os.environ.get("HF_SPECDECPP_CACHE", Path.home() / ".cache" / "hf_specdecpp"))
        draft, target = str(cache / "qwen2.5-coder-0.5b-instruct"), str(cache / "qwen2.5-coder-1.5b-instruct")
        for p in (draft, target):
            if not (Path(p) / "config.json").is_file():
                raise SystemExit(f"{p} missing: run `hf-specdecpp fetch-models` first")
        n, t = args.prompts or 16, args.max_new_tokens or 128
        gen_n, gen_t = (4 if args.gen_prompts is None else args.gen_prompts), args.gen_tokens or t
        roles = {"human": "user", "gpt": "assistant"}
        records = [PromptRecord(messages=[{"role": roles[m["from"]], "content": m["value"]} for m in r["conversations"]])
                   for r in synthetic_chat_records(max(n, gen_n))]
        return target, draft, records, n, t, gen_n, gen_t
    from hf_specdecpp.testing import save_tiny_pair, tiny_prompts

    target, draft = save_tiny_pair(work / "models", noise=0.3)
    n, t = args.prompts or 64, args.max_new_tokens or 64
    gen_n, gen_t = (16 if args.gen_prompts is None else args.gen_prompts), args.gen_tokens or t
    records = [PromptRecord(prompt=r["prompt"], response=r["response"])  # the tiny tokenizer knows only w6..w95
               for r in tiny_prompts(max(n, gen_n), with_response=t)]
    return target, draft, records, n, t, gen_n, gen_t


def time_make_data(folder: Path, records: list, responses: str, common: dict) -> tuple[dict, dict]:
    """(report entry, the folder's totals) of one make-data run."""
    from hf_specdecpp.training import make_data
    from hf_specdecpp.utils.io import read_json

    start = time.perf_counter()
    make_data(folder, records=records, responses=responses, **common)
    secs = time.perf_counter() - start
    totals = read_json(folder / "progress.json")["totals"]
    toks = totals["train_tokens"] + totals["dev_tokens"]
    return {"prompts": len(records), "tokens": toks, "seconds": secs, "tokens_per_s": toks / secs}, totals


def time_train_and_calibrate(work: Path, args: argparse.Namespace, label_rows: int) -> dict:
    """Report entries of training the head on `work/data` and calibrating it."""
    from hf_specdecpp.training import calibrate_head, train_head

    start = time.perf_counter()
    state = train_head(work / "data", work / "head", epochs=args.epochs, batch_size=4, show_progress=True)
    secs = time.perf_counter() - start
    rows = label_rows * args.epochs
    report = {"train": {"label_rows_x_epochs": rows, "seconds": secs, "rows_per_s": rows / secs,
                        "best": {k: state["best"]["metrics"].get(k) for k in ("weighted_bce", "baseline_weighted_bce",
                                                                               "auroc_reject", "ece")}}}
    start = time.perf_counter()
    cal = calibrate_head(work / "head", work / "data", device=args.device, dtype=args.dtype, repeats=5,
                         show_progress=True)
    secs = time.perf_counter() - start
    report["calibrate"] = {"dev_positions": cal["dev_positions"], "seconds": secs, "threshold": cal["threshold"],
                           "cost_ratio": cal["cost_ratio"], "verify_slope": cal["cost"]["verify_slope"],
                           "speedup": cal["speedup"], "best_fixed_k": cal["best_fixed_k"],
                           "fixed_k_speedup": cal["fixed_k_speedup"]}
    return report


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_training_"))
    target, draft, records, n, t, gen_n, gen_t = pair_and_records(args, work)
    common = dict(draft=draft, target=target, max_new_tokens=t, batch_size=args.batch_size, shard_size=16,
                  dev_fraction=0.25, device=args.device, dtype=args.dtype, show_progress=True)
    report = {"device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
              "threads": torch.get_num_threads(), "real": args.real}
    report["make_data_dataset"], totals = time_make_data(work / "data", records[:n], "dataset", common)
    if gen_n:
        report["make_data_generate"], _ = time_make_data(work / "data_gen", records[:gen_n], "target",
                                                         {**common, "max_new_tokens": gen_t})
    report.update(time_train_and_calibrate(work, args, totals["train_label_rows"]))
    goal = args.target_prompts * args.target_tokens
    report["extrapolation"] = {
        "goal": f"{args.target_prompts} prompts x {args.target_tokens} tokens",
        "make_data_dataset_s": goal / report["make_data_dataset"]["tokens_per_s"],
        **({"make_data_generate_s": goal / report["make_data_generate"]["tokens_per_s"]} if gen_n else {}),
        "train_s_per_epoch": goal * 0.85 * 0.75 / report["train"]["rows_per_s"],
    }
    print(json.dumps(report, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
