"""The benchmark's plots (matplotlib, Agg backend): speedup by method, candidate lengths, the discard vs
verification trade-off (Pareto) and tree budgets. Each takes plain summary rows, so timed and exact results
share them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .configs import ORACLE


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)


def speedup_plot(summary: Sequence[dict], path: Path, title: str = "Speedup by method (oracle: cost-model estimate)",
                 ylabel: str = "speedup over target alone (geo. mean)") -> None:
    """Bars of every row's `speedup` (the oracle in gray)."""
    plt = _pyplot()
    rows = [r for r in summary if r["speedup"] == r["speedup"]]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows) + 2), 4))
    colors = ["tab:gray" if r["config"] == ORACLE else "tab:blue" for r in rows]
    ax.bar([r["config"] for r in rows], [r["speedup"] for r in rows], color=colors)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=60)
    _save(fig, path)


def candidate_length_plot(lengths_by_config: dict[str, list[int]], path: Path) -> None:
    """Histograms of candidates per round, one step line per configuration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if lengths_by_config:
        top = max(max(v) for v in lengths_by_config.values())
        bins = [x - 0.5 for x in range(0, top + 2)]
        for name, lengths in lengths_by_config.items():
            ax.hist(lengths, bins=bins, histtype="step", label=name, density=True)
        ax.legend(fontsize=7)
    ax.set_xlabel("candidates per round")
    ax.set_ylabel("fraction of rounds")
    ax.set_title("Candidate lengths (hf_specdecpp generators)")
    _save(fig, path)


def tradeoff_plot(summary: Sequence[dict], sweep_names: Sequence[str], path: Path,
                  title: str = "Discard vs verification trade-off") -> None:
    """Discard rate against verification rate (target forwards per token): the SpecDec++ threshold sweep as a
    line (its Pareto front), every other configuration as a point."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    rows = {r["config"]: r for r in summary}
    sweep = [rows[n] for n in sweep_names if n in rows and rows[n]["discard_rate"] is not None]
    if sweep:
        sweep.sort(key=lambda r: r["target_fw_per_token"])
        ax.plot([r["target_fw_per_token"] for r in sweep], [r["discard_rate"] for r in sweep], "o-",
                label="SpecDec++ threshold sweep")
        for r in sweep:
            ax.annotate(r["config"], (r["target_fw_per_token"], r["discard_rate"]), fontsize=7)
    for r in summary:
        if r["config"] not in sweep_names and r["discard_rate"] is not None:
            ax.plot(r["target_fw_per_token"], r["discard_rate"], "*" if r["config"] == ORACLE else "x",
                    color="tab:gray")
            ax.annotate(r["config"], (r["target_fw_per_token"], r["discard_rate"]), fontsize=7, color="tab:gray")
    ax.set_xlabel("verification rate (target forwards / token)")
    ax.set_ylabel("discard rate (rejected drafts / drafted)")
    ax.set_title(title)
    if sweep:
        ax.legend(fontsize=8)
    _save(fig, path)


def tree_budget_plot(summary: Sequence[dict], trees: dict, references: set[str], path: Path) -> None:
    """Speedup against tree budget, one line per tree variant (draft-guided / head-guided), the best three chain
    methods as dashed lines; `references` (target alone, oracle) are not chains."""
    plt = _pyplot()
    rows = {r["config"]: r for r in summary}
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, with_head in (("DySpec (draft probabilities)", False), ("DySpec + acceptance head", True)):
        points = sorted((c.config.budget, rows[n]["speedup"]) for n, c in trees.items()
                        if (c.head is not None) == with_head and n in rows)
        if points:
            ax.plot([b for b, _ in points], [v for _, v in points], "o-", label=variant)
    chains = [r for r in summary if r["config"] not in trees and r["config"] not in references
              and r["speedup"] == r["speedup"]]
    for r in sorted(chains, key=lambda r: -r["speedup"])[:3]:
        ax.axhline(r["speedup"], ls="--", lw=0.8, color="tab:gray")
        ax.annotate(r["config"], (ax.get_xlim()[0], r["speedup"]), fontsize=7, color="tab:gray")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tree budget (drafted nodes per round)")
    ax.set_ylabel("speedup over target alone (geo. mean)")
    ax.set_title("Draft trees: speedup by budget (dashed: best chain methods)")
    ax.legend(fontsize=8)
    _save(fig, path)
