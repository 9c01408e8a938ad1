"""The `bench` command of the CLI (see `register`): options only; the work is `hf_specdecpp.bench.command`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import friendly, numbers

DATASETS = ("humaneval", "mtbench", "both", "sharegpt")

Dataset = Annotated[str, typer.Option("--dataset", help="humaneval (tasks 0-79), mtbench, both, or sharegpt (the 80 tuning prompts: choose parameters there, not on the benchmark sets).")]
Subset = Annotated[Optional[int], typer.Option("--subset", min=1, help="Use the first N prompts of each set.")]
Head = Annotated[Optional[str], typer.Option("--head", help="Acceptance head: local directory or Hub repo "
                                                            "(default: the shipped head for the real pair).")]
Thresholds = Annotated[Optional[str], typer.Option("--thresholds", help="SpecDec++ thresholds h to sweep (default: "
                                                                        "the head's calibrated h, and h +- 0.2).")]
MaxCandidates = Annotated[Optional[int], typer.Option(
    "--max-candidates", min=1, help="Cap on candidates per round for SpecDec++ and entropy stopping (default: the "
                                    "head's calibrated cap, else 20).")]
TreeBudgets = Annotated[str, typer.Option("--tree-budgets", help="DySpec tree budgets, e.g. 4,8 (empty: skip).")]
SpecdecCaps = Annotated[str, typer.Option("--specdec-caps", help="Also run SpecDec++ at the head's threshold with "
                                                                 "these caps, e.g. 12 (empty: skip).")]
FixedK = Annotated[str, typer.Option("--fixed-k", help="Fixed candidate lengths K.")]
EntropyLams = Annotated[str, typer.Option("--entropy-lams", help="Thresholds of the AdaEDL-style entropy rule "
                                                                 "(empty: skip).")]
SvipHs = Annotated[str, typer.Option("--svip-hs", help="Thresholds h of SVIP (stop when sqrt(0.15 * draft entropy) "
                                                       "> h; the authors use 0.3), e.g. 0.3 (empty: skip).")]
GammaTuneOption = Annotated[bool, typer.Option("--gammatune/--no-gammatune", help="Also run GammaTune-style "
                                                                                  "adaptive K (moving average of "
                                                                                  "accepted counts).")]
Sampling = Annotated[bool, typer.Option("--sampling/--greedy", help="Sampling at T=0.7, or greedy.")]
MaxNewTokens = Annotated[int, typer.Option("--max-new-tokens", min=1)]
OutputDir = Annotated[Path, typer.Option("--output-dir", help="Folder for tables and plots (one subfolder per set).")]
Dtype = Annotated[str, typer.Option("--dtype", help="float32 (exact; fastest on CPUs without native bfloat16), "
                                                    "bfloat16 or float16.")]
Device = Annotated[Optional[str], typer.Option("--device", help="Where both models run: cpu, cuda, cuda:1, ... "
                                                                "(default: cpu).")]
DeviceMap = Annotated[Optional[str], typer.Option("--device-map", help="Passed to from_pretrained instead of "
                                                                       "--device, e.g. auto (real pair only).")]
FastLinear = Annotated[bool, typer.Option("--fast-cpu-linear/--plain-linear", help="FewRowLinear layers in both "
                                                                                   "models (float32 on CPU only).")]
Tiny = Annotated[bool, typer.Option("--tiny", help="Tiny random models, tokenizer and head (smoke test).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run saved in --output-dir (same options "
                                                       "required); results are saved after every prompt.")]
Exact = Annotated[bool, typer.Option("--exact", help="Exact mode: greedy counts replayed from one recorded trace "
                                                     "per prompt (sampling: counted real calls, --seeds each), "
                                                     "turned into time with the cost curve measured here.")]
Seeds = Annotated[int, typer.Option("--seeds", min=1, help="Exact mode with --sampling: seeds per prompt.")]
Validate = Annotated[int, typer.Option("--validate", min=0, help="Exact mode: also time the first N prompts "
                                                                 "interleaved and compare with the prediction.")]
CostRepeats = Annotated[int, typer.Option("--cost-repeats", min=1, help="Exact mode: timed repeats of the cost "
                                                                        "curve.")]
CostsFile = Annotated[Optional[Path], typer.Option("--costs", help="Exact mode: use this saved cost curve "
                                                                   "(costs.json) instead of measuring one.")]
GreedyCacheFile = Annotated[Optional[Path], typer.Option(
    "--greedy-cache", help="Exact mode, greedy: a JSON file of the target's greedy outputs, read and extended, so "
                           "later runs with other heads or thresholds skip the target's generation.")]
Reference = Annotated[Optional[str], typer.Option("--reference", help="Exact mode, greedy: the configuration whose "
                                                                      "real call gives the greedy output, e.g. "
                                                                      "fixed-K3 (faster than target alone; its "
                                                                      "counts check the replay).")]

Only = Annotated[str, typer.Option("--only", help="Run only these configurations, by their table names, e.g. "
                                                  "fixed-K4,svip-h0.3,specdec++-h0.25 (the target alone is always "
                                                  "run; empty: all the options build).")]


def _list(text: str, kind, option: str, what: str | None = None) -> list:
    """Comma-separated numbers (empty text: none); with `what`, each must be >= 1."""
    values = numbers(text, kind, option) if text.strip() else []
    if what and any(v < 1 for v in values):
        raise typer.BadParameter(f"{what} must be >= 1", param_hint=option)
    return values


def _options(**values):
    """The parsed and checked `BenchOptions`."""
    from ..bench.command import BenchOptions

    if values["dataset"] not in DATASETS:
        raise typer.BadParameter(f"{values['dataset']!r} is not one of {', '.join(DATASETS)}", param_hint="--dataset")
    if values["device"] and values["device_map"]:
        raise typer.BadParameter("give --device or --device-map, not both", param_hint="--device-map")
    if values["dtype"] not in ("float32", "bfloat16", "float16"):
        raise typer.BadParameter(f"unknown dtype {values['dtype']!r}", param_hint="--dtype")
    if values["thresholds"]:
        values["thresholds"] = numbers(values["thresholds"], float, "--thresholds", 0.0, 1.0)
        if any(not 0 < h < 1 for h in values["thresholds"]):
            raise typer.BadParameter("thresholds must lie strictly between 0 and 1", param_hint="--thresholds")
    values["tree_budgets"] = _list(values["tree_budgets"], int, "--tree-budgets", "tree budgets")
    values["specdec_caps"] = _list(values["specdec_caps"], int, "--specdec-caps", "caps")
    values["fixed_k"] = _list(values["fixed_k"], int, "--fixed-k", "K") or numbers(values["fixed_k"], int, "--fixed-k")
    values["entropy_lams"] = _list(values["entropy_lams"], float, "--entropy-lams")
    values["svip_hs"] = _list(values["svip_hs"], float, "--svip-hs")
    if any(h <= 0 for h in values["svip_hs"]):
        raise typer.BadParameter("SVIP thresholds must be > 0", param_hint="--svip-hs")
    return BenchOptions(**values)


def register(app: typer.Typer) -> None:
    """Add `bench` to the typer `app`."""

    @app.command("bench")
    @friendly
    def bench_command(dataset: Dataset = "both", subset: Subset = None, head: Head = None,
                      thresholds: Thresholds = None, max_candidates: MaxCandidates = None, tree_budgets: TreeBudgets = "",
                      specdec_caps: SpecdecCaps = "", fixed_k: FixedK = "1,2,3,4,5,6,7,8,9,10",
                      entropy_lams: EntropyLams = "0.3", svip_hs: SvipHs = "", gammatune: GammaTuneOption = False,
                      sampling: Sampling = False, max_new_tokens: MaxNewTokens = 96,
                      output_dir: OutputDir = Path("bench-results"), dtype: Dtype = "float32", device: Device = None,
                      device_map: DeviceMap = None, fast_cpu_linear: FastLinear = True, tiny: Tiny = False,
                      resume: Resume = False, exact: Exact = False, seeds: Seeds = 3, validate: Validate = 0,
                      cost_repeats: CostRepeats = 10, costs: CostsFile = None, reference: Reference = None,
                      greedy_cache: GreedyCacheFile = None, only: Only = "") -> None:
        """Benchmark SpecDec++ against transformers' assisted generation, fixed K, entropy stopping and the
        training-free peers (SVIP, GammaTune): timed and interleaved, or (--exact) exact counts turned into time
        with this machine's cost curve."""
        options = _options(dataset=dataset, subset=subset, head=head, thresholds=thresholds,
                           max_candidates=max_candidates, tree_budgets=tree_budgets, specdec_caps=specdec_caps,
                           fixed_k=fixed_k, entropy_lams=entropy_lams, svip_hs=svip_hs, gammatune=gammatune,
                           sampling=sampling, max_new_tokens=max_new_tokens, output_dir=output_dir, dtype=dtype,
                           device=device, device_map=device_map, fast_cpu_linear=fast_cpu_linear, tiny=tiny,
                           resume=resume, exact=exact, seeds=seeds, validate=validate, cost_repeats=cost_repeats,
                           costs_file=costs, reference=reference, greedy_cache=greedy_cache,
                           only=[n.strip() for n in only.split(",") if n.strip()])
        from rich.console import Console

        from ..bench.command import run_bench

        console = Console(stderr=True)
        run_bench(options, echo=typer.echo, status=lambda text: console.print(text, highlight=False))
