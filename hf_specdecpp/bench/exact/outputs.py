"""Writing and reading the exact mode's files: `exact.md` and `exact.csv` (the table), `exact_records.csv` (one row
per call), `exact.json` (settings, records and per-prompt recording times: the checkpoint a run resumes from),
`costs.json` (the cost curve and machine), `speedup.png` and, with a SpecDec++ threshold sweep, `pareto.png`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...core.costs import CostCurve
from ...utils.io import read_json, write_json
from ..checkpoint import check_same_settings
from ..outputs import write_csv
from ..plots import speedup_plot, tradeoff_plot
from ..summary import mean
from .records import RECORD_COLUMNS, ExactRecord
from .summary import EXACT_COLUMNS, exact_markdown
from .validate import validation_markdown


@dataclass
class ExactResult:
    """A finished (or checkpointed) exact run."""

    records: list[ExactRecord]
    summary: list[dict]
    settings: dict
    costs: CostCurve | None
    prompt_info: dict[str, dict] = field(default_factory=dict)
    validation: list[dict] = field(default_factory=list)
    specdec_names: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        text = exact_markdown(self.summary, self.settings, self.costs)
        recording = [i["record_s"] for i in self.prompt_info.values() if "record_s" in i]
        if recording:
            text += (f"\nTrace recording: {mean(recording):.2f} s per prompt on average (target greedy output, "
                     "draft path and branches), "
                     f"{mean([i['new_tokens'] for i in self.prompt_info.values()]):.1f} new tokens per prompt.\n")
        checks = [i["reference_counts_equal"] for i in self.prompt_info.values() if "reference_counts_equal" in i]
        if checks:
            text += (f"\nGreedy output from `{self.settings.get('reference')}`: its real counts equal the replay on "
                     f"{sum(checks)} of {len(checks)} prompts.\n")
        if self.validation:
            text += "\nValidation (wall clock, interleaved, on a subset):\n\n" + validation_markdown(self.validation)
        return text


def write_exact_checkpoint(result: ExactResult, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "exact.json", dict(settings=result.settings, records=[asdict(r) for r in result.records],
                                           prompt_info=result.prompt_info))


def load_exact_checkpoint(folder: Path, settings: dict) -> tuple[list[ExactRecord], dict, int, CostCurve | None]:
    """(records, prompt info, sittings so far, saved cost curve) of the run in `folder` (nothing: empty)."""
    path = folder / "exact.json"
    if not path.exists():
        return [], {}, 0, None
    saved = read_json(path)
    check_same_settings(saved["settings"], settings, folder)
    costs_path = folder / "costs.json"
    costs = CostCurve.from_dict(read_json(costs_path)["costs"]) if costs_path.exists() else None
    return ([ExactRecord(**r) for r in saved["records"]], saved.get("prompt_info", {}),
            saved["settings"].get("runs", 1), costs)


def write_exact_outputs(result: ExactResult, folder: Path) -> dict[str, Path]:
    """Every file of the module docstring; returns their paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in ("exact.md", "exact.csv", "exact_records.csv", "costs.json",
                                              "speedup.png")}
    paths["exact.md"].write_text(result.markdown())
    write_csv(paths["exact.csv"], result.summary, EXACT_COLUMNS)
    write_csv(paths["exact_records.csv"], [r.row() for r in result.records], RECORD_COLUMNS)
    write_json(paths["costs.json"], dict(costs=result.costs.to_dict(), machine=result.settings.get("machine")))
    write_exact_checkpoint(result, folder)
    paths["exact.json"] = folder / "exact.json"
    speedup_plot(result.summary, paths["speedup.png"], title="Speedup by method (exact counts x cost curve)",
                 ylabel="speedup over target alone (decode steps)")
    if len(result.specdec_names) > 1:
        paths["pareto.png"] = folder / "pareto.png"
        tradeoff_plot(result.summary, result.specdec_names, paths["pareto.png"],
                      title="Discard vs verification rate (exact counts)")
    return paths
