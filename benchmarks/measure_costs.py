"""The real pair's cost curve on this machine, per dtype: c = draft step / target step and v(K) = a target pass
verifying K candidates / a target step (K = 0..20), timed interleaved (`hf_specdecpp.core.costs.measure_costs`).

    python benchmarks/measure_costs.py --dtypes float32,bfloat16 --repeats 10 --out DIR

Writes DIR/costs-<dtype>.json (the format `hf-specdecpp bench --exact --costs FILE` reads) and prints a table.
float32 runs with FewRowLinear, as `load_pair()` loads it on a CPU. Run it on a quiet machine (`uptime` load
near 0): costs measured beside other jobs are not usable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hf_specdecpp.assets import load_pair
from hf_specdecpp.bench.machine import machine_info
from hf_specdecpp.core.costs import VERIFY_KS, measure_costs
from hf_specdecpp.utils.io import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.dtypes.split(","):
        target, draft, _ = load_pair(dtype=getattr(torch, name), device=args.device)
        costs = measure_costs(draft, target, ks=tuple(k for k in VERIFY_KS if k <= 20), repeats=args.repeats,
                              warmup=3)
        info = machine_info(target)
        write_json(args.out / f"costs-{name}.json", {"costs": costs.to_dict(), "machine": info})
        v = costs.verify_cost
        rows.append(f"| {info['device']} | {costs.target_step_s * 1000:.0f} ms | {costs.c_draft:.2f} | "
                    + " | ".join(f"{v[k]:.2f}" for k in sorted(v)) + " |")
        header = "| device, dtype | target step | c | " + " | ".join(f"v({k})" for k in sorted(v)) + " |"
        del target, draft
    print(header)
    print("|---" * (3 + len(v)) + "|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
