"""Does the target's side tell a stop rule more than the draft's confidence does? (issue 17, greedy)

    python benchmarks/target_side_study.py --data SERVED_DIR --prompts PROMPTS.jsonl --out DIR [--dtype bfloat16]
        [--target MODEL]

SERVED_DIR is a make-data folder of prompts answered greedily by the target itself (`--responses target
--head-inputs producing_state`), PROMPTS.jsonl the prompt file it was made from, MODEL the target that answered
(a folder or Hub id; default: the real pair's target, `hf_specdecpp.assets.pair`). For each response the target is
run once, teacher-forced, over the prompt and its answer, giving its distribution at every position.

A stop rule deciding at drafted position p of a round that started at position s knows the draft's outputs up to
p and, from the target, only what the verify pass before the round returned: its distributions up to position
s - 1 (the token it emitted last) and whether that round ended in a rejection. The rounds are walked as greedy
speculative decoding walks them (teacher-forced draft = what the draft proposes while the round is accepted;
a round stops at its first mismatch), for three round rules: one candidate per round (every position is a round
start: the most the target's side can give), a fixed 4, and the draft's top-1 product rule (stop once
1 - prod(top-1) > 0.5, cap 20). Every position a round reaches is one example.

Logistic regressions (and gradient-boosted trees, for what a linear model misses) are fitted on the dev split
and scored on the other half: rejection AUROC of the draft's confidence features alone, with the target's
features at s - 1 (entropy, top-1 probability, top-1 minus top-2), with the previous round's outcome and the
depth in the round, and, as a bound no rule can have, with the target's own features at p.
Writes DIR/target_side.json and DIR/target_side.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from hf_specdecpp.head import DEFAULT_MAX_CANDIDATES
from hf_specdecpp.training.data_folder import read_metadata
from hf_specdecpp.training.metrics import rejection_auroc
from hf_specdecpp.training.prompts import read_jsonl_prompts, source_digest
from hf_specdecpp.training.shards import load_features
from hf_specdecpp.training.tokens import encode_record
from hf_specdecpp.utils.io import read_json_object, write_json

NO_TARGET_YET = np.array([0.0, 1.0, 1.0])  # the first round: the target has not run yet (a sure, peaked value)
TOP1_CAP = DEFAULT_MAX_CANDIDATES  # the top-1 product rule's cap, as SpecDec++'s default
ROUND_RULES = {"one candidate per round": ("fixed", 1), "fixed K = 4": ("fixed", 4),
               f"top-1 product rule (h 0.5, cap {TOP1_CAP})": ("top1", 0.5)}


@torch.no_grad()
def target_columns(target, prompt_ids: list[int], response: list[int]) -> np.ndarray:
    """(n, 3) per response position p: the target's entropy, top-1 probability and top-1 minus top-2 probability
    of the distribution that produced response token p (float32 softmax of its logits)."""
    ids = torch.tensor([prompt_ids + response[:-1]], device=target.device)
    logits = target(input_ids=ids, use_cache=False, logits_to_keep=len(response)).logits[0, -len(response):].float()
    probs = torch.softmax(logits, dim=-1)
    top = probs.topk(2, dim=-1).values
    return torch.stack([torch.special.entr(probs).sum(-1), top[:, 0], top[:, 0] - top[:, 1]], dim=1).cpu().numpy()


def walk_rounds(labels: np.ndarray, top1: np.ndarray, rule: tuple[str, float]) -> list[tuple[int, int, int, bool]]:
    """(position p, round start s, depth j, previous round rejected) for every position a round reaches."""
    kind, value = rule
    n, s, rejected, out = len(labels), 0, False, []
    while s < n:
        p, survive = s, 1.0
        while p < n:
            out.append((p, s, p - s + 1, rejected))
            if labels[p] < 0.5:  # first mismatch: the target corrects position p
                s, rejected = p + 1, True
                break
            survive *= top1[p]
            full = (p - s + 1 >= value) if kind == "fixed" else (1 - survive > value or p - s + 1 >= TOP1_CAP)
            if full:  # all accepted: the target adds a bonus token at p + 1
                s, rejected = p + 2, False
                break
            p += 1
        else:
            break
    return out


def examples(rows: list[dict], rule: tuple[str, float]) -> dict[str, np.ndarray]:
    """Feature blocks and labels of every reached position of every response."""
    blocks = {k: [] for k in ("draft", "target_last", "round", "target_own", "labels")}
    for r in rows:
        conf, labels, tcols = r["features"], r["labels"], r["target"]
        top1 = np.exp(conf[:, 1])  # log q_max -> the draft's top-1 probability
        for p, s, j, rejected in walk_rounds(labels, top1, rule):
            blocks["draft"].append(conf[p])
            blocks["target_last"].append(tcols[s - 1] if s > 0 else NO_TARGET_YET)
            blocks["round"].append([float(rejected), np.log(j)])
            blocks["target_own"].append(tcols[p])
            blocks["labels"].append(labels[p])
    return {k: np.asarray(v, dtype=np.float64) for k, v in blocks.items()}


FEATURE_SETS = {
    "draft confidence (log q(token), log q_max, entropy)": ("draft",),
    "+ target at s-1 (entropy, top-1, margin)": ("draft", "target_last"),
    "+ target at s-1 + previous round rejected + depth": ("draft", "target_last", "round"),
    "bound: + target's own features at p (not available to any rule)": ("draft", "target_own"),
}


def fit_and_score(fit: dict, held: dict) -> dict[str, dict[str, float]]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    for name, parts in FEATURE_SETS.items():
        x_fit = np.hstack([fit[p] for p in parts])
        x_held = np.hstack([held[p] for p in parts])
        y = fit["labels"] >= 0.5
        lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_fit, y)
        gb = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0).fit(x_fit, y)
        out[name] = {"logistic": rejection_auroc(lr.predict_proba(x_held)[:, 1], held["labels"]),
                     "boosted trees": rejection_auroc(gb.predict_proba(x_held)[:, 1], held["labels"])}
    out["draft top-1 probability alone"] = {"score": rejection_auroc(np.exp(held["draft"][:, 1]), held["labels"])}
    return out


def load_rows(data_dir: Path, prompts: Path, split: str, target, tokenizer, limit: int | None = None,
              progress: bool = True) -> list[dict]:
    meta = read_metadata(data_dir)
    if meta.get("responses") != "target" or meta.get("decoding", {}).get("do_sample"):
        raise SystemExit(f"{data_dir}: needs greedy responses by the target (make-data --responses target)")
    records = read_jsonl_prompts(prompts)[:meta["source"]["num_prompts"]]
    if source_digest(records) != meta["source"]["digest"]:  # make-data's own record of what it read
        raise SystemExit(f"{prompts}: not the prompts {data_dir} was made from (another prompt file?)")
    ds = load_features(data_dir, split).select_columns(
        ["prompt_index", "prompt_length", "response_tokens", "context_features", "context_labels"])
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    rows, clock = [], time.perf_counter()
    for i, r in enumerate(ds):
        prompt_ids, _ = encode_record(records[r["prompt_index"]], tokenizer, chat=meta["chat"], need_response=False,
                                      max_prompt_tokens=meta["max_prompt_tokens"],
                                      max_new_tokens=meta["max_new_tokens"])
        prompt_ids = prompt_ids[-r["prompt_length"]:]
        if len(prompt_ids) != r["prompt_length"]:
            raise SystemExit(f"prompt {r['prompt_index']}: {len(prompt_ids)} tokens, the data says "
                             f"{r['prompt_length']} (another target's tokenizer?)")
        response = list(r["response_tokens"])
        tcols = target_columns(target, prompt_ids, response)
        rows.append({"features": np.asarray(r["context_features"], np.float64),
                     "labels": np.asarray(r["context_labels"], np.float64), "target": tcols.astype(np.float64)})
        if progress:
            print(f"{split} {i + 1}/{len(ds)} ({time.perf_counter() - clock:.0f} s)", flush=True)
    return rows


def load_target(name: str | None, dtype: torch.dtype):
    """(target model in eval mode, its tokenizer): `name` from a folder or the Hub, or the real pair's target."""
    if name is None:
        from hf_specdecpp.assets.pair import load_pair

        target, _, tokenizer = load_pair(dtype=dtype, fast_cpu_linear=False, progress=False)
        return target, tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(name, dtype=dtype).eval(), AutoTokenizer.from_pretrained(name)


def markdown(report: dict) -> str:
    from hf_specdecpp.bench.machine import machine_line

    lines = ["# The target's side as stop-rule input (greedy)", "", f"Machine: {machine_line(report['machine'])}.", "",
             f"Fitted on the dev split ({report['responses']['dev']} responses), rejection AUROC on the other "
             f"half ({report['responses']['train']} responses). Examples: the positions each round rule reaches.", ""]
    for rule, res in report["results"].items():
        lines += [f"## Rounds: {rule} ({res['examples_fit']} / {res['examples_held']} positions, "
                  f"acceptance {res['acceptance_held']:.3f})", "", "| inputs | logistic | boosted trees |",
                  "|---|---|---|"]
        for name, scores in res["auroc"].items():
            if "score" in scores:
                lines.append(f"| {name} | {scores['score']:.3f} | |")
            else:
                lines.append(f"| {name} | {scores['logistic']:.3f} | {scores['boosted trees']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--prompts", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--target", default=None, help="the target that answered (default: the real pair's)")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most this many responses per split (a quick look)")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite DIR/target_side.md from its json")
    args = parser.parse_args()
    if args.markdown_only:
        report = read_json_object(args.out / "target_side.json", "target-side study")
        (args.out / "target_side.md").write_text(markdown(report) + "\n")
        return
    if args.data is None or args.prompts is None:
        parser.error("--data and --prompts are required")

    from hf_specdecpp.bench.machine import machine_info

    target, tokenizer = load_target(args.target, getattr(torch, args.dtype))
    data = {split: load_rows(args.data, args.prompts, split, target, tokenizer, args.limit)
            for split in ("dev", "train")}
    report = {"machine": machine_info(target), "data": str(args.data),
              "responses": {k: len(v) for k, v in data.items()}, "results": {}}
    for rule_name, rule in ROUND_RULES.items():
        fit, held = examples(data["dev"], rule), examples(data["train"], rule)
        report["results"][rule_name] = {"examples_fit": len(fit["labels"]), "examples_held": len(held["labels"]),
                                        "acceptance_held": float(held["labels"].mean()),
                                        "auroc": fit_and_score(fit, held)}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "target_side.json", report)
    (args.out / "target_side.md").write_text(markdown(report) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
