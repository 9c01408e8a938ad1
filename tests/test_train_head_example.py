"""examples/train_head.py runs as written: make-data -> train -> calibrate -> push to a (local) Hub endpoint ->
load by repo id -> generate, greedy output equal to the target's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_head.py"


def test_train_head_example_end_to_end(hub_server, tmp_path):
    path = [str(EXAMPLE.parents[1])] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1"}  # hub_server's HF_* too
    out = subprocess.run([sys.executable, str(EXAMPLE), "--endpoint", hub_server.url, "--workdir", str(tmp_path / "w"),
                          "--repo-id", "me/tiny-head"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "identical to the target's own greedy output: True" in out.stdout
    files = hub_server.state.repos["me/tiny-head"].files("main")
    assert {"model.safetensors", "config.json", "policy.json", "traces.safetensors", "README.md"} <= set(files)
    downloads = {path.split("?")[0] for method, path in hub_server.state.requests if method == "GET"}
    assert "/me/tiny-head/resolve/main/model.safetensors" in downloads  # loaded back by repo id from the endpoint


def test_train_head_example_finishes_offline_with_local_dir(tmp_path, monkeypatch):
    path = [str(EXAMPLE.parents[1])] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf_home")}  # nothing reachable
    upload = tmp_path / "upload"
    out = subprocess.run([sys.executable, str(EXAMPLE), "--workdir", str(tmp_path / "w"), "--local-dir", str(upload)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "identical to the target's own greedy output: True" in out.stdout
    assert {"model.safetensors", "config.json", "policy.json", "traces.safetensors", "README.md"} <= {
        p.name for p in upload.iterdir()}
