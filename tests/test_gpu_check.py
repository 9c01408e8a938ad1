"""The prepared GPU check runs end to end on the CPU with tiny shapes (the dry run of the GPU session's command)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_dry_run_on_cpu(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--small", "--skip", "tests", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert not [name for name, stage in report.items() if isinstance(stage, dict) and "error" in stage], report
    assert report["environment"]["device"] == "cpu"
    equality = [check for checks in report["equality"].values() for check in checks.values()]
    assert len(equality) == 8 and all(c["candidate_generator"] and c["custom_generate"] for c in equality)
    assert any(c["accepted"] > 0 for c in equality) and any(c["accepted"] == 0 for c in equality)
    for curve in report["costs"].values():  # every target shape was timed
        assert curve["c_draft"] > 0 and curve["verify_cost"]["0"] == 1.0
    for routes in report["overhead"].values():
        assert len(routes) == 3 and all(r["forward_s"] > 0 and r["target_passes"] > 0 for r in routes.values())
    compiled = report["compiled"]  # the verify pass on a static cache, eager and compiled (aot_eager on a CPU)
    assert compiled["backend"] == "aot_eager" and compiled["prefill"] == 128 and set(compiled["ks"]) == {"0", "1", "3"}
    for entry in compiled["ks"].values():
        assert entry["eager_s"] > 0 and entry["compiled_first_s"] > 0 and entry["compiled_steady_s"] > 0, entry
    assert compiled["ks"]["0"]["new_graphs"] >= 1 and compiled["graphs"] >= 1  # the first call compiled
    batch = report["batch_costs"]  # issue 18: target step, verify and draft step per batch size B
    assert batch["prefill"] == 128 and batch["ks"] == [0, 3, 7, 15] and batch["measured"] == ["1", "2", "4"]
    for entry in batch["batches"].values():
        assert entry["target_step_s"] > 0 and entry["draft_step_s"] > 0 and entry["c_B"] > 0, entry
        assert set(entry["verify_s"]) == {"0", "3", "7", "15"} and all(t > 0 for t in entry["verify_s"].values())
        assert entry["v_B"]["0"] == 1.0 and entry["cache"] == "DynamicCache"
    for label, entry in report["syncs"].items():  # issue 27: within budget, no blocking upload, depth-independent
        assert entry["syncs"] <= entry["budget"] + 3 and entry["upload"] == 0, (label, entry)
    assert {p["config"] for p in report["scaling"]["points"]} == {"target", "specdec++", "tree"}
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "## Host synchronisations" in markdown and "## Scaling: ms per generated token" in markdown
    batched = markdown.split("## Batched costs (7B target)")[1].split("\n## ")[0]
    assert "| B | target step ms | draft step ms | c_B | v_B(3) | v_B(7) | v_B(15) |" in batched
    assert all(f"\n| {b} | " in batched for b in (1, 2, 4))
    assert "## Costs" in markdown and "qwen2.5-32b" in markdown and "FAILED" not in markdown
    section = markdown.split("## Compiled verify (static cache)")[1]
    assert "| K | eager s | compiled first call s | compiled steady s | ratio |" in section
    assert all(f"\n| {k} | " in section for k in (0, 1, 3))
