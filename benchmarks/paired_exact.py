"""Paired comparison of an exact-mode run (`bench --exact`): every configuration's cost over a reference
configuration's cost on the same prompt, geometric mean with a 95% Student-t interval and win count, per set.

    python benchmarks/paired_exact.py RUN_DIR REFERENCE [--out FILE]

RUN_DIR is a `bench --exact --output-dir` folder (one subfolder per set with `exact_records.csv`). Ratios > 1 mean
REFERENCE needed fewer target-step units (was faster) on that prompt. Sampling runs pair the calls made with the
same prompt and seed (each such pair counts as one sample; the seeds of one prompt are not independent draws of
prompts, so read those intervals as a little narrow).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from hf_specdecpp.bench.paired import log_ratio_interval, paired_markdown


def paired_rows(records_csv: Path, reference: str) -> list[dict]:
    units: dict[str, dict[str, float]] = {}
    with open(records_csv, newline="") as f:
        for row in csv.DictReader(f):  # greedy: one row per prompt; sampling: one per prompt and seed
            key = f"{row['prompt_id']} seed {row['seed']}" if row["seed"] else row["prompt_id"]
            units.setdefault(row["config"], {})[key] = float(row["units"])
    if reference not in units:
        raise SystemExit(f"{records_csv} has no configuration {reference!r}; it has {sorted(units)}")
    base = units[reference]
    return [dict(config=name, **log_ratio_interval([math.log(u / base[p]) for p, u in by_prompt.items() if p in base]))
            for name, by_prompt in units.items() if name != reference]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("reference")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    parts = []
    for records in sorted(args.run_dir.glob("*/exact_records.csv")):
        parts.append(f"## {records.parent.name}\n\n" + paired_markdown(paired_rows(records, args.reference),
                                                                     args.reference))
    text = "\n".join(parts)
    if args.out is not None:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
