"""calibrate: measure the draft/target costs on this machine and choose the head's policy by simulation.

The costs (`hf_specdecpp.core.costs`) and the simulation (`hf_specdecpp.methods.specdecpp.calibration`) are
the inference package's own; this module runs them on a make-data folder's dev split, saves the chosen policy
(`policy.json`, tagged with the device it was measured on), the dev traces that let users re-calibrate on their
own hardware (`traces.safetensors`), the calibration record (in `training_info.json`) and a plot.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.costs import VERIFY_KS, CostCurve, load_cost_curve, measure_costs, verify_cost_table
from ..core.device import DeviceKind
from ..core.validation import check_candidate_bounds, check_int, check_number
from ..head import AcceptanceHead, HeadPolicy
from ..methods.specdecpp.calibration import acceptance_outcomes, choose_threshold, pack_traces
from .common import (TrainingError, check_declared_ids, check_model_ids, checked, load_model, pick_device,
                     pick_dtype, progress, require_train_extras, step, train_extra, warn_small_dev_split)
from .data_folder import read_metadata
from .head_files import PLOT_FILE, check_head_folder, save_head
from .shards import head_input_columns, load_head_inputs

MAX_CANDIDATES_LIMIT = 64
"""The largest cap on candidates per round calibrate considers (recalibrate's limit too)."""


def save_plot(result: dict, path: str | os.PathLike, title: str = "") -> None:
    """The simulated time per token against the threshold, with the fixed-K, target-alone and oracle lines."""
    matplotlib = train_extra("matplotlib", "the calibration plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hs = [float(h) for h in result["grid"]]
    ts = list(result["grid"].values())
    fig, ax = plt.subplots(figsize=(6, 4))
    cap = result.get("max_candidates")
    ax.plot(hs, ts, marker="o", ms=3, label="SpecDec++ threshold h" + (f" (at most {cap} candidates)" if cap else ""))
    ax.axhline(result["fixed_k_time_per_token"], color="tab:red", ls="--",
               label=f"best fixed K = {result['best_fixed_k']}")
    ax.axhline(1.0, color="gray", ls=":", label="target alone")
    if result.get("oracle_speedup"):
        ax.axhline(1.0 / result["oracle_speedup"], color="tab:purple", ls=":", label="oracle (first rejection)")
    ax.axvline(result["threshold"], color="tab:green", ls="-.", label=f"chosen h = {result['threshold']:.2f}")
    ax.set_xlabel("threshold h")
    ax.set_ylabel("simulated time per token (target steps)")
    ax.set_title(title or "acceptance-head threshold calibration")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- the command
def reused_costs(head_dir: str | os.PathLike, meta: dict) -> CostCurve:
    """The costs measured when another head for the same draft/target pair was calibrated, or a cost-curve JSON
    file (`benchmarks/measure_costs.py`, `bench --exact`: `{"costs": {...}}` or the curve itself)."""
    if Path(head_dir).is_file():
        try:
            return load_cost_curve(head_dir)
        except (KeyError, TypeError, ValueError) as err:
            raise TrainingError(f"{head_dir} is not a cost curve (c_draft, verify_s, ...): {err}") from err
    try:
        other = AcceptanceHead.from_pretrained(str(head_dir))
    except (OSError, ValueError) as err:
        raise TrainingError(f"Could not load the head {head_dir} whose costs should be reused: {err}") from err
    cost = (other.training_info or {}).get("calibration", {}).get("cost")
    if not cost or "verify_s" not in cost:
        raise TrainingError(f"{head_dir} holds no measured costs: calibrate it with timing first")
    fingerprints = (other.training_info or {}).get("data", {})
    for role in ("draft", "target"):
        theirs = fingerprints.get(f"{role}_fingerprint", {}).get("weights_sha")
        if theirs is not None and theirs != meta[role]["weights_sha"]:
            raise TrainingError(f"{head_dir} was calibrated for another {role} model: its costs do not apply")
    return CostCurve.from_dict(cost)


def _costs(meta: dict, draft, target, costs_from, cost_ratio, verify_slope, max_candidates, repeats, prompt_length,
           seed, device, dtype, show_progress) -> tuple[CostCurve | None, float, np.ndarray]:
    """(measured costs or None, cost ratio c, v(K) table) for the calibration."""
    if costs_from is not None:
        costs = reused_costs(costs_from, meta)
    elif cost_ratio is None:
        draft, target = (m if hasattr(m, "config") else m or meta[role]["id"]
                         for m, role in ((draft, "draft"), (target, "target")))
        check_model_ids(draft, target)
        dev = pick_device(device)
        dt = pick_dtype(dtype, dev)
        with step("calibrate: loading the draft and the target for timing", show_progress):
            draft_model = load_model(draft, dev, dt) if not hasattr(draft, "config") else draft
            target_model = load_model(target, dev, dt) if not hasattr(target, "config") else target
        ks = tuple(k for k in VERIFY_KS if k <= max_candidates)
        bar = progress(total=2 + repeats, desc="calibrate: timing", disable=not show_progress, unit="repeat")
        costs = measure_costs(draft_model, target_model, prompt_length=prompt_length, ks=ks, repeats=repeats,
                              seed=seed, on_repeat=lambda _: bar.update(1))
        bar.close()
    else:
        return None, float(cost_ratio), verify_cost_table(max_candidates, verify_slope=float(verify_slope or 0.0))
    if verify_slope is not None:  # a given slope replaces the measured curve
        return costs, costs.c_draft, verify_cost_table(max_candidates, verify_slope=float(verify_slope))
    return costs, costs.c_draft, costs.table(max_candidates)


def _dev_traces(head: AcceptanceHead, data_dir, show_progress: bool = False
                ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray] | None]:
    """The head's predictions, the labels (and the confidence features) at every dev position, per response."""
    columns = head_input_columns(head.input_state, head.use_confidence_features, calibration=True)
    hidden_col, feature_col, label_col = columns
    dev_ds = load_head_inputs(data_dir, "dev", columns)
    if len(dev_ds) == 0:
        raise TrainingError(f"No dev records in {data_dir}: make the data with a dev fraction > 0")
    head.eval()
    preds, labels, features = [], [], []
    with torch.no_grad():
        for row in progress(dev_ds, desc="calibrate: scoring the dev split", disable=not show_progress,
                            unit="response"):
            hidden = torch.as_tensor(np.asarray(row[hidden_col], dtype=np.float32))
            feats = None if feature_col is None else torch.as_tensor(np.asarray(row[feature_col], dtype=np.float32))
            preds.append(head(hidden, feats).numpy().astype(np.float64))
            labels.append(np.asarray(row[label_col], dtype=np.float64))
            if feats is not None:
                features.append(feats.numpy())
    return preds, labels, features or None


def calibrate_head(
    head_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    output_dir: str | os.PathLike | None = None,
    draft: str | Any | None = None,
    target: str | Any | None = None,
    cost_ratio: float | None = None,
    verify_slope: float | None = None,
    costs_from: str | os.PathLike | None = None,
    min_candidates: int = 1,
    max_candidates: int = 20,
    search_cap: bool = True,
    cap_tolerance: float = 0.0,
    num_draws: int = 8,
    seed: int = 0,
    repeats: int = 10,
    prompt_length: int = 128,
    device: str | None = None,
    dtype: str | None = None,
    plot: bool = True,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Measure costs (unless `cost_ratio` is given, or `costs_from` names a head calibrated for the same pair on
    this machine), choose h and the cap on the dev split, and save the head with its policy and dev traces to
    `output_dir` (default: `head_dir`, in place). Returns the calibration result."""
    require_train_extras("calibrate", "datasets", "tqdm", *(["matplotlib"] if plot else []))
    check_calibration_args(cost_ratio, verify_slope, min_candidates, max_candidates, cap_tolerance, num_draws, seed,
                           repeats, prompt_length)
    head_dir = Path(head_dir)
    output_dir = Path(output_dir) if output_dir is not None else head_dir
    head = load_head(head_dir)
    meta = read_metadata(data_dir)
    check_declared_ids(meta, {"draft": head.draft_model_id, "target": head.target_model_id}, str(data_dir))
    if head.hidden_size != meta["hidden_size"]:
        raise TrainingError(f"The head's hidden size {head.hidden_size} differs from the data's {meta['hidden_size']}")
    check_head_folder(output_dir, plot=plot)
    costs, c_draft, table = _costs(meta, draft, target, costs_from, cost_ratio, verify_slope, max_candidates, repeats,
                                   prompt_length, seed, device, dtype, show_progress)
    preds, labels, features = _dev_traces(head, data_dir, show_progress)
    warn_small_dev_split(len(labels), f"The data set in {data_dir}")
    greedy = not meta["decoding"]["do_sample"]
    outcomes = acceptance_outcomes(labels, greedy, num_draws=num_draws, seed=seed)
    with step(f"calibrate: simulating drafting rounds on {len(labels)} dev responses", show_progress):
        result = choose_threshold(preds, outcomes, c_draft=c_draft, verify_costs=table, min_candidates=min_candidates,
                                  max_candidates=max_candidates, search_cap=search_cap, cap_tolerance=cap_tolerance,
                                  lagged=not head.scores_without_lag)
    if result["speedup"] <= 1.0:
        warnings.warn(f"The calibrated head's simulated speedup is {result['speedup']:.2f}x: with these costs "
                      "it would make generation slower than the target alone.", UserWarning, stacklevel=2)
    result.update(_record(costs, c_draft, costs_from, min_candidates, max_candidates, labels, greedy, num_draws))
    apply_calibration(head, result, costs, c_draft, meta, preds, labels, greedy, features)
    save_head(head, output_dir)
    if plot:
        save_plot(result, output_dir / PLOT_FILE)
    return result


def check_calibration_args(cost_ratio, verify_slope, min_candidates, max_candidates, cap_tolerance, num_draws, seed,
                           repeats, prompt_length) -> None:
    """Each numeric setting in its range (a TrainingError names the argument)."""
    checked(lambda: check_number("cost_ratio", cost_ratio, 0.0, low_open=True, allow_none=True),
            lambda: check_number("verify_slope", verify_slope, 0.0, allow_none=True),
            lambda: check_candidate_bounds(min_candidates, max_candidates),
            lambda: check_int("max_candidates", max_candidates, maximum=MAX_CANDIDATES_LIMIT),
            lambda: check_number("cap_tolerance", cap_tolerance, 0.0),
            lambda: check_int("num_draws", num_draws), lambda: check_int("seed", seed, minimum=0),
            lambda: check_int("repeats", repeats), lambda: check_int("prompt_length", prompt_length))


def load_head(head_dir: Path) -> AcceptanceHead:
    try:
        return AcceptanceHead.from_pretrained(str(head_dir))
    except (OSError, ValueError) as err:
        raise TrainingError(f"Could not load the acceptance head in {head_dir}: {err}") from err


def _record(costs, c_draft, costs_from, min_candidates, max_candidates, labels, greedy, num_draws) -> dict:
    """What the calibration record adds to `choose_threshold`'s result: the costs and the dev split's size."""
    cost_record = costs.to_dict() if costs else {"c_draft": c_draft, "measured": False}
    if costs_from is not None:
        cost_record["reused_from"] = str(costs_from)
    return {"cost": cost_record, "cost_ratio": c_draft, "min_candidates": min_candidates,
            "max_candidates_limit": max_candidates, "dev_responses": len(labels),
            "dev_positions": int(sum(len(l) for l in labels)), "greedy": greedy,
            "num_draws": 1 if greedy else num_draws}


def apply_calibration(head: AcceptanceHead, result: dict, costs, c_draft: float, meta: dict, preds, labels,
                      greedy: bool, features) -> None:
    """Give the head its policy, its dev traces and the calibration record."""
    head.policy = HeadPolicy(
        threshold=float(result["threshold"]), max_candidates=int(result["max_candidates"]), cost_ratio=c_draft,
        verify_costs=tuple(float(v) for v in result["verify_costs"]),
        measured_on=DeviceKind(**costs.device) if costs and costs.device else None, decoding=dict(meta["decoding"]),
        simulation={k: result[k] for k in ("time_per_token", "speedup", "best_fixed_k", "fixed_k_speedup",
                                           "oracle_speedup", "dev_responses")})
    head.traces = pack_traces(preds, labels, greedy, features)
    head.training_info = {**(head.training_info or {}), "calibration": result}
