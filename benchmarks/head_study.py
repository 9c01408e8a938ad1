"""What a trained head adds over the draft's own confidence (issue 17), on data the head never saw.

    python benchmarks/head_study.py --data SERVED_DIR --heads HEAD_DIR [HEAD_DIR ...] --costs costs.json --out DIR

SERVED_DIR is a make-data folder of prompts answered by the target itself (the served distribution; none of them
in any head's training data). For every position of it (both splits):
- rejection AUROC of each head and of the training-free scores (the draft's top probability, the AdaEDL entropy
  estimate);
- simulated speed-up under the cost curve (the calibration's round walk) of each rule at its best parameter on
  the dev split, reported on the train split (parameters chosen on one half, measured on the other): fixed K,
  the top-1 rule, the entropy rule, SVIP, the GammaTune-style length, transformers' static confidence rule,
  each head at its best (h, cap), each head with its bias adapted online within every response (see
  `OnlineBias`), and the oracle.
Writes DIR/head_study.json, DIR/head_study.md and DIR/roc.png (rejection ROC curves of every score).
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import numpy as np
import torch

from hf_specdecpp import AcceptanceHead
from hf_specdecpp.core.costs import CostCurve, cost_curve_from_json
from hf_specdecpp.methods.gammatune.generator import GammaTuneConfig, next_gamma
from hf_specdecpp.methods.gammatune.generator import round_length as gammatune_length
from hf_specdecpp.methods.specdecpp.calibration import simulate_policy, simulate_rounds, threshold_round_length
from hf_specdecpp.training.metrics import rejection_auroc
from hf_specdecpp.training.shards import head_input_columns, load_head_inputs
from hf_specdecpp.utils.io import read_json_object, write_json

THRESHOLDS = [round(x, 2) for x in np.arange(0.05, 0.96, 0.05)]
CAPS = (2, 3, 4, 6, 8, 12, 16, 20)
RATES = (0.05, 0.1, 0.2, 0.4)


class OnlineBias:
    """SpecDec++'s rule with a per-response logit bias learned while generating: after each round, every drafted
    token whose outcome is known (the accepted ones and the first rejected one) moves the bias by
    `rate * (accepted - predicted)`, so a response whose tokens are accepted more (or less) often than the head
    predicts gets longer (shorter) rounds."""

    def __init__(self, preds: list[np.ndarray], threshold: float, cap: int, rate: float):
        self.logits = [np.log(np.clip(p, 1e-6, 1 - 1e-6)) - np.log1p(-np.clip(p, 1e-6, 1 - 1e-6)) for p in preds]
        self.threshold, self.cap, self.rate = threshold, cap, rate
        self.state: dict[int, tuple[float, int, int]] = {}

    def __call__(self, r: int, j: int, n: int, run: np.ndarray) -> int:
        bias = 0.0
        if j > 0 and r in self.state:
            bias, start, k = self.state[r]
            accepted = min(int(run[start]), k)
            for t in range(min(accepted + 1, k)):
                p = 1.0 / (1.0 + math.exp(-(self.logits[r][start + t] + bias)))
                bias += self.rate * ((t < accepted) - p)
        limit = min(self.cap, n - j)
        adjusted = 1.0 / (1.0 + np.exp(-(self.logits[r][j:j + limit] + bias)))
        k = threshold_round_length(adjusted, 0, limit, self.threshold, 1, lagged=False)
        self.state[r] = (bias, j, k)
        return k


class GammaTuneRounds:
    """The GammaTune-style rule (`hf_specdecpp.methods.gammatune`) in the calibration's round walk: K per round
    from the response's smoothed length, moved by the previous round's outcome."""

    def __init__(self, config):
        self.config = config
        self.state: dict[int, tuple[float, int, int]] = {}

    def __call__(self, r: int, j: int, n: int, run: np.ndarray) -> int:
        gamma = float(self.config.initial)
        if j > 0 and r in self.state:
            gamma, start, k = self.state[r]
            gamma = next_gamma(gamma, k, min(int(run[start]), k), self.config.smoothing)
        k = min(gammatune_length(gamma, self.config), n - j)
        self.state[r] = (gamma, j, k)
        return k


def load_positions(data_dir: Path, split: str) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(hidden states, confidence features, labels) per response of `split` (producing-state columns)."""
    columns = head_input_columns("producing_state", True)
    ds = load_head_inputs(data_dir, split, columns)
    rows = [(np.asarray(r[columns[0]], np.float32), np.asarray(r[columns[1]], np.float32),
             np.asarray(r[columns[2]], np.float64)) for r in ds]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


@torch.no_grad()
def head_predictions(head: AcceptanceHead, hidden: list[np.ndarray], features: list[np.ndarray]) -> list[np.ndarray]:
    head.eval()
    return [head(torch.from_numpy(h), torch.from_numpy(f) if head.use_confidence_features else None)
            .double().numpy() for h, f in zip(hidden, features)]


def best_of(outcomes, candidates: dict, costs: CostCurve, table) -> tuple[str, dict]:
    """The candidate rule (name -> round_length or simulate kwargs) with the lowest simulated time per token."""
    results = {name: run(outcomes, costs, table) for name, run in candidates.items()}
    name = min(results, key=lambda n: results[n]["time_per_token"])
    return name, results[name]


def rule_families(preds: dict[str, list[np.ndarray]], features: list[np.ndarray]) -> dict[str, dict]:
    """Every family of rules, each a dict of parameter name -> runner(outcomes, costs, table)."""
    top = [np.exp(f[:, 1]) for f in features]
    entropy = [1.0 - np.sqrt(np.clip(f[:, 2], 0.0, None)) for f in features]
    svip = [-np.sqrt(0.15 * np.clip(f[:, 2], 0.0, None)) for f in features]  # stop when -sqrt(0.15 H) < -h

    def below(values, level, cap):
        def round_length(r, j, n, run):
            limit = min(cap, n - j)
            hit = np.flatnonzero(values[r][j:j + limit] < level)
            return int(hit[0]) + 1 if len(hit) else limit
        return lambda outcomes, costs, table: simulate_rounds(outcomes, round_length, c_draft=costs.c_draft,
                                                              verify_costs=table, max_k=20)

    families = {
        "fixed K": {f"K={k}": (lambda k: lambda o, c, t: simulate_policy(None, o, fixed_k=k, c_draft=c.c_draft,
                                                                          verify_costs=t, max_candidates=20))(k)
                    for k in (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20)},
        "top-1 rule": {f"p<{x:g}": below(top, x, 20) for x in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)},
        "entropy rule (AdaEDL)": {f"lam={x:g}": below(entropy, x, 20) for x in (-0.5, 0.0, 0.1, 0.2, 0.3, 0.5, 0.7)},
        "transformers static (p<0.4, cap 20)": {"default": below(top, 0.4, 20)},
        "SVIP (sqrt(0.15 H) > h)": {f"h={x:g}": below(svip, -x, 20) for x in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)},
        "GammaTune-style": {f"start {g:g}, smoothing {a:g}": (lambda g, a: lambda o, c, t: simulate_rounds(
            o, GammaTuneRounds(GammaTuneConfig(initial=g, smoothing=a)), c_draft=c.c_draft, verify_costs=t,
            max_k=20))(g, a) for g in (2, 4, 6) for a in (0.25, 0.5, 0.75)},
    }
    for name, p in preds.items():
        families[f"head {name}"] = {
            f"h={h:g}, cap {cap}": (lambda h, cap, p: lambda o, c, t: simulate_policy(
                p, o, threshold=h, c_draft=c.c_draft, verify_costs=t, max_candidates=cap, lagged=False))(h, cap, p)
            for h, cap in itertools.product(THRESHOLDS, CAPS)}
        families[f"head {name} + online bias"] = {
            f"h={h:g}, cap {cap}, rate {rate:g}": (lambda h, cap, rate, p: lambda o, c, t: simulate_rounds(
                o, OnlineBias(p, h, cap, rate), c_draft=c.c_draft, verify_costs=t, max_k=20))(h, cap, rate, p)
            for h, cap, rate in itertools.product(THRESHOLDS[::2], (4, 8, 20), RATES)}
    return families


def _columns(data_dir: Path, split: str, names: list[str]) -> dict[str, list[np.ndarray]]:
    from hf_specdecpp.training.shards import load_features

    ds = load_features(data_dir, split).select_columns(names).with_format("numpy")
    return {n: [np.asarray(v) for v in ds[n]] for n in names}


def _inputs(cols: dict, token_rate: dict[int, float], prior: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per position: the candidate extra inputs (beside the confidence features) and the labels."""
    feats = np.concatenate(cols["context_features"])
    tokens = np.concatenate(cols["draft_tokens"])
    rate = np.array([token_rate.get(int(t), prior) for t in tokens])
    previous = np.concatenate([np.concatenate([[1.0], lab[:-1]]) for lab in cols["context_labels"]])
    position = np.concatenate([np.log1p(np.arange(len(lab))) for lab in cols["context_labels"]])
    extra = {"token identity (acceptance rate of the drafted token in the training data)":
             np.log(rate / (1 - rate))[:, None],
             "previous position accepted (known at round starts only: an upper bound)": previous[:, None],
             "position in the response": position[:, None]}
    return {"confidence": feats, **{k: np.hstack([feats, v]) for k, v in extra.items()}}, \
        np.concatenate(cols["context_labels"])


def feature_ablation(train_dir: Path, served_dir: Path) -> dict[str, float]:
    """Rejection AUROC on the served data of logistic regressions fitted on the training data: the confidence
    features alone, then each with one more input."""
    from sklearn.linear_model import LogisticRegression

    names = ["context_features", "context_labels", "draft_tokens"]
    train = _columns(train_dir, "train", names)
    served = {n: _columns(served_dir, "dev", names)[n] + _columns(served_dir, "train", names)[n] for n in names}
    tokens, labels = np.concatenate(train["draft_tokens"]), np.concatenate(train["context_labels"])
    prior = float(labels.mean())
    counts = np.bincount(tokens, minlength=1), np.bincount(tokens, weights=labels, minlength=1)
    token_rate = {int(t): float((counts[1][t] + 20 * prior) / (counts[0][t] + 20)) for t in np.flatnonzero(counts[0])}
    fit_x, fit_y = _inputs(train, token_rate, prior)
    eval_x, eval_y = _inputs(served, token_rate, prior)
    out = {}
    for name, x in fit_x.items():
        model = LogisticRegression(max_iter=1000).fit(x, fit_y >= 0.5)
        out[name] = rejection_auroc(model.predict_proba(eval_x[name])[:, 1], eval_y)
    return out


def study(data_dir: Path, heads: list[Path], costs: CostCurve) -> dict:
    table = costs.table(20)
    halves = {split: load_positions(data_dir, split) for split in ("dev", "train")}
    report = {"auroc": {}, "simulation": {}, "positions": {s: int(sum(len(x) for x in v[2])) for s, v in
                                                            halves.items()}}
    preds = {split: {h.name: head_predictions(AcceptanceHead.from_pretrained(h), hid, feat) for h in heads}
             for split, (hid, feat, _) in halves.items()}
    labels_all = np.concatenate([np.concatenate(halves[s][2]) for s in halves])
    feats_all = np.concatenate([np.concatenate(halves[s][1]) for s in halves])
    report["auroc"]["draft top probability"] = rejection_auroc(np.exp(feats_all[:, 1]), labels_all)
    report["auroc"]["entropy estimate (1 - sqrt H)"] = rejection_auroc(1 - np.sqrt(np.clip(feats_all[:, 2], 0, None)),
                                                                       labels_all)
    scores = {"draft top probability": np.exp(feats_all[:, 1]),
              "entropy estimate (1 - sqrt H)": 1 - np.sqrt(np.clip(feats_all[:, 2], 0, None))}
    for h in heads:
        p = np.concatenate([np.concatenate(preds[s][h.name]) for s in halves])
        report["auroc"][f"head {h.name}"] = rejection_auroc(p, labels_all)
        scores[f"head {h.name}"] = p
    report["roc"] = roc_points(scores, labels_all)
    outcomes = {s: [[lab >= 0.5 for lab in halves[s][2]]] for s in halves}
    tuned = rule_families(preds["dev"], halves["dev"][1])
    measured = rule_families(preds["train"], halves["train"][1])
    for family, rules in tuned.items():
        name, dev_result = best_of(outcomes["dev"], rules, costs, table)
        held_out = measured[family][name](outcomes["train"], costs, table)
        report["simulation"][family] = {"chosen on dev": name, "dev": dev_result, "held out": held_out}
    report["simulation"]["oracle"] = {"held out": simulate_policy(None, outcomes["train"], oracle=True,
                                                                  c_draft=costs.c_draft, verify_costs=table,
                                                                  max_candidates=20)}
    return report


def roc_points(scores: dict[str, np.ndarray], labels: np.ndarray, points: int = 101) -> dict[str, dict]:
    """Per score, the rejection ROC curve (false and true positive rates of `1 - score`) at `points` thresholds."""
    from sklearn.metrics import roc_curve

    out = {}
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(labels < 0.5, 1.0 - score)
        grid = np.linspace(0, 1, points)
        out[name] = {"fpr": grid.tolist(), "tpr": np.interp(grid, fpr, tpr).tolist()}
    return out


def roc_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, curve in report["roc"].items():
        ax.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUROC {report['auroc'][name]:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    ax.set(xlabel="false rejection alarms (accepted tokens flagged)", ylabel="rejections caught",
           title="Predicting the target's rejections (served data)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(report: dict, costs_name: str) -> str:
    lines = ["| score | rejection AUROC |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in report["auroc"].items()]
    if "ablation" in report:
        lines += ["", "Logistic regressions fitted on the training data, AUROC on the served data:", "",
                  "| inputs | rejection AUROC |", "|---|---|"]
        lines += [f"| {k if k == 'confidence' else 'confidence + ' + k} | {v:.3f} |"
                  for k, v in report["ablation"].items()]
    lines += ["", f"Simulated speed-up over the target alone ({costs_name}); parameter chosen on the dev half, "
              "measured on the other half:", "", "| rule | chosen on dev | held-out speed-up | mean K |", "|---|---|---|---|"]
    for family, r in report["simulation"].items():
        held = r["held out"]
        lines.append(f"| {family} | {r.get('chosen on dev', '-')} | {held['speedup']:.3f}x | "
                     f"{held['mean_candidates']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--heads", type=Path, nargs="+", required=True)
    parser.add_argument("--costs", type=Path, required=True)
    parser.add_argument("--train-data", type=Path, default=None,
                        help="the heads' training data: adds the feature ablation (logistic regressions)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data = read_json_object(args.costs, "cost curve")
    costs = cost_curve_from_json(data)
    report = study(args.data, args.heads, costs)
    if args.train_data is not None:
        report["ablation"] = feature_ablation(args.train_data, args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "head_study.json", report)
    text = markdown(report, (data.get("machine") or {}).get("device", str(args.costs)))
    (args.out / "head_study.md").write_text(text)
    roc_plot(report, args.out / "roc.png")
    print(text)


if __name__ == "__main__":
    main()
