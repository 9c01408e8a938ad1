"""Copy a trained, calibrated head into the package as a shipped head (with the Hub ids of the pair).

Usage: python benchmarks/ship_head.py HEAD_DIR NAME
(NAME: a folder under hf_specdecpp/head/shipped/, e.g. qwen2.5-coder-0.5b-to-1.5b-greedy).
"""

import sys
from pathlib import Path

from hf_specdecpp.head import AcceptanceHead
from hf_specdecpp.head.shipped import HEADS_DIR
from hf_specdecpp.training import export_head

PAIR = {"draft_model_id": "Qwen/Qwen2.5-Coder-0.5B-Instruct", "target_model_id": "Qwen/Qwen2.5-Coder-1.5B-Instruct"}


def main(head_dir: str, name: str) -> None:
    head = AcceptanceHead.from_pretrained(head_dir)
    for key, hub_id in PAIR.items():  # the head was trained on local copies of these checkpoints
        local = getattr(head, key)
        if Path(local).name.lower() != hub_id.split("/")[1].lower():
            raise SystemExit(f"{key} is {local!r}, not a copy of {hub_id}")
    head.training_info.update(PAIR)
    staging = Path(head_dir) / "ship"
    head.save_pretrained(str(staging))
    (staging / "calibration.png").write_bytes((Path(head_dir) / "calibration.png").read_bytes())
    out = export_head(staging, HEADS_DIR / name, repo_id=f"hf-specdecpp/acchead-{name}")
    print(f"shipped {head_dir} as {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
