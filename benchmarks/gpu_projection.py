"""Project every policy's speed-up from the shipped head's dev traces and measured cost curves (GPU check
output and/or CPU curves), one column per curve.

    python benchmarks/gpu_projection.py --gpu-check docs/benchmarks/gpu-DATE/gpu_check.json \
        [--costs costs-bfloat16.json ...] [--head NAME_OR_PATH] --out DIR

Writes DIR/projection.json and DIR/projection.md. A projection (see `hf_specdecpp.bench.projection`), not a
measurement: it is labelled so wherever it is shown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_specdecpp import AcceptanceHead, load_shipped_head
from hf_specdecpp.bench.projection import project, projection_markdown
from hf_specdecpp.core.costs import CostCurve, cost_curve_from_json
from hf_specdecpp.head.shipped import shipped_heads
from hf_specdecpp.utils.io import read_json_object, write_json


def cost_curves(gpu_check: Path | None, cost_files: list[Path]) -> dict[str, CostCurve]:
    """`{column name: curve}`: every target shape of a GPU check report, then every cost file."""
    curves = {}
    if gpu_check is not None:
        report = read_json_object(gpu_check, "GPU check report")
        for shape, curve in (report.get("costs") or {}).items():
            if isinstance(curve, dict) and "verify_s" in curve:
                curves[f"GPU {shape}"] = CostCurve.from_dict(curve)
    for path in cost_files:
        data = read_json_object(path, "cost curve")
        curve = cost_curve_from_json(data)
        device = (data.get("machine") or {}).get("device") or path.stem
        curves[device] = curve
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu-check", type=Path)
    parser.add_argument("--costs", type=Path, nargs="*", default=[])
    parser.add_argument("--head", default=None, help="a shipped head name or a head folder (default: greedy head)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.head is None or args.head in shipped_heads():
        head = load_shipped_head(args.head) if args.head else load_shipped_head()
    else:
        head = AcceptanceHead.from_pretrained(args.head)
    curves = cost_curves(args.gpu_check, args.costs)
    if not curves:
        raise SystemExit("no cost curves: pass --gpu-check and/or --costs")
    projections = {name: project(head, curve) for name, curve in curves.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "projection.json", projections)
    title = (f"Projected speed-up over the target alone (mean candidates per round) from the dev traces of "
             f"{args.head or 'the shipped greedy head'}: a projection, not a measurement")
    (args.out / "projection.md").write_text(projection_markdown(projections, title))
    print((args.out / "projection.md").read_text())


if __name__ == "__main__":
    main()
