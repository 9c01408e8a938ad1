"""benchmarks/head_study.py end to end on tiny data: AUROCs, the rule families chosen on one half and measured on
the other, the feature ablation, and the ROC plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hf_specdecpp.testing import save_tiny_pair, tiny_prompts
from hf_specdecpp.training import make_data, train_head

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "head_study.py"
COSTS = {"c_draft": 0.4, "draft_step_s": 0.04, "target_step_s": 0.1, "prompt_length": 16, "repeats": 1,
         "device": {"device_type": "cpu", "dtype": "float32"},
         "verify_cost": {"0": 1.0, "1": 1.0, "2": 1.05, "4": 1.1, "8": 1.3, "16": 1.8, "20": 2.0},
         "verify_s": {"0": 0.1, "1": 0.1, "2": 0.105, "4": 0.11, "8": 0.13, "16": 0.18, "20": 0.2}}


def test_head_study_on_tiny_data(tmp_path):
    pytest.importorskip("sklearn")
    target, draft = save_tiny_pair(tmp_path / "models", noise=0.3, seed=0)
    kw = dict(draft=draft, target=target, max_new_tokens=32, shard_size=16, batch_size=8, show_progress=False,
              head_inputs="producing_state")
    for name, seed in (("train", 0), ("served", 1)):
        prompts = tmp_path / f"{name}.jsonl"
        prompts.write_text("".join(json.dumps(r) + "\n" for r in tiny_prompts(24, seed=seed)))
        make_data(tmp_path / name, prompts_file=prompts, dev_fraction=0.5 if name == "served" else 0.25, **kw)
    train_head(tmp_path / "train", tmp_path / "head", epochs=2, batch_size=4, input_state="producing_state",
               use_confidence_features=True, show_progress=False)
    (tmp_path / "costs.json").write_text(json.dumps({"costs": COSTS}))
    out = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "served"), "--heads",
                          str(tmp_path / "head"), "--costs", str(tmp_path / "costs.json"), "--train-data",
                          str(tmp_path / "train"), "--out", str(tmp_path / "study")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "study" / "head_study.json").read_text())
    assert set(report["auroc"]) == {"draft top probability", "entropy estimate (1 - sqrt H)", "head head"}
    assert all(0.0 <= v <= 1.0 for v in report["auroc"].values())
    sims = report["simulation"]
    assert {"fixed K", "SVIP (sqrt(0.15 H) > h)", "GammaTune-style", "head head", "head head + online bias",
            "oracle"} <= set(sims)
    oracle = sims["oracle"]["held out"]["speedup"]
    assert all(r["held out"]["speedup"] <= oracle + 1e-9 for r in sims.values())  # nothing beats the oracle
    assert "confidence" in report["ablation"] and len(report["ablation"]) == 4
    assert (tmp_path / "study" / "roc.png").stat().st_size > 1000
    assert "| head head |" in (tmp_path / "study" / "head_study.md").read_text()


TARGET_SIDE = Path(__file__).resolve().parents[1] / "benchmarks" / "target_side_study.py"


def _target_side_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("target_side_study", TARGET_SIDE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_target_side_rounds_by_hand():
    """The round walk: a round stops at its first mismatch (the target corrects it; the next round starts after
    it) or when its rule is full (all accepted: the target adds a bonus token, the next round starts after that);
    every reached position is listed with its round start, depth and the previous round's outcome."""
    study = _target_side_module()
    labels = [1, 1, 0, 1, 1, 1, 1, 0]
    top1 = [0.9] * 8
    assert study.walk_rounds(labels, top1, ("fixed", 2)) == [
        (0, 0, 1, False), (1, 0, 2, False),  # both accepted: bonus token at 2
        (3, 3, 1, False), (4, 3, 2, False),  # both accepted: bonus at 5
        (6, 6, 1, False), (7, 6, 2, False)]  # 7 rejected: the walk ends with the response
    # the top-1 product rule at h 0.5 with top-1 0.9 keeps drafting for six candidates (0.9 ** 6 = 0.53 > 0.5),
    # so these rounds end at their mismatches
    assert study.walk_rounds(labels, top1, ("top1", 0.5)) == [
        (0, 0, 1, False), (1, 0, 2, False), (2, 0, 3, False),
        (3, 3, 1, True), (4, 3, 2, True), (5, 3, 3, True), (6, 3, 4, True), (7, 3, 5, True)]
    assert study.walk_rounds(labels, [0.1] * 8, ("top1", 0.5)) == [  # 1 - 0.1 > 0.5: one candidate per round
        (0, 0, 1, False), (2, 2, 1, False), (3, 3, 1, True), (5, 5, 1, False), (7, 7, 1, False)]


def test_target_side_study_on_tiny_data(tmp_path):
    """benchmarks/target_side_study.py end to end on a tiny pair's greedy served data: every round rule, every
    input set, AUROCs in [0, 1], and a wrong prompt file is refused by name."""
    pytest.importorskip("sklearn")
    target, draft = save_tiny_pair(tmp_path / "models", noise=0.3, seed=0)
    prompts = tmp_path / "served.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in tiny_prompts(24, seed=1)))
    make_data(tmp_path / "served", prompts_file=prompts, draft=draft, target=target, max_new_tokens=32,
              shard_size=16, batch_size=8, show_progress=False, head_inputs="producing_state", dev_fraction=0.5)
    out = subprocess.run([sys.executable, str(TARGET_SIDE), "--data", str(tmp_path / "served"), "--prompts",
                          str(prompts), "--target", target, "--dtype", "float32", "--out", str(tmp_path / "study")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "study" / "target_side.json").read_text())
    study = _target_side_module()
    assert set(report["results"]) == set(study.ROUND_RULES)
    for res in report["results"].values():
        assert res["examples_fit"] > 0 and res["examples_held"] > 0
        assert set(res["auroc"]) == set(study.FEATURE_SETS) | {"draft top-1 probability alone"}
        assert all(0.0 <= v <= 1.0 for scores in res["auroc"].values() for v in scores.values())
    assert "| + target at s-1 (entropy, top-1, margin) |" in (tmp_path / "study" / "target_side.md").read_text()
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r) + "\n" for r in tiny_prompts(24, seed=7)))
    out = subprocess.run([sys.executable, str(TARGET_SIDE), "--data", str(tmp_path / "served"), "--prompts",
                          str(other), "--target", target, "--dtype", "float32", "--out", str(tmp_path / "s2")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode != 0 and "another prompt file?" in out.stderr
