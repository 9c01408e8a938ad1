"""The tiny demo runs the real pipeline (make-data -> train -> calibrate -> generate) offline."""

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def test_tiny_demo_end_to_end():
    out = subprocess.run([sys.executable, str(DEMO), "--tiny", "--max-new-tokens", "24"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "identical to the target's own greedy output: True" in out.stdout
    assert "tok/s" in out.stdout and "rounds" in out.stdout
