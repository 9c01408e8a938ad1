"""The `bench` command of the CLI (see `register`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

DATASETS = ("humaneval", "mtbench", "both")


def _numbers(text: str, kind, option: str) -> list:
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}", param_hint=option) from None
    if not values:
        raise typer.BadParameter("expected at least one value", param_hint=option)
    return values


def register(app: typer.Typer) -> None:
    """Add `bench` to the typer `app`."""

    @app.command("bench")
    def bench_command(
        dataset: str = typer.Option("both", "--dataset", help="humaneval (tasks 0-79), mtbench or both."),
        subset: Optional[int] = typer.Option(None, "--subset", min=1, help="Use the first N prompts of each set."),
        head: Optional[str] = typer.Option(None, "--head", help="Acceptance head: local directory or Hub repo "
                                                                "(default: the shipped head for the real pair)."),
        thresholds: Optional[str] = typer.Option(None, "--thresholds",
                                                 help="SpecDec++ thresholds h to sweep (default: the head's "
                                                      "calibrated h, and h +- 0.2)."),
        max_candidates: Optional[int] = typer.Option(None, "--max-candidates", min=1,
                                                     help="Cap on candidates per round for SpecDec++ and entropy "
                                                          "stopping (default: the head's calibrated cap, else 20)."),
        tree_budgets: str = typer.Option("", "--tree-budgets", help="DySpec tree budgets, e.g. 4,8 (empty: skip)."),
        specdec_caps: str = typer.Option("", "--specdec-caps",
                                         help="Also run SpecDec++ at the head's threshold with these caps on "
                                              "candidates per round, e.g. 12 (empty: skip)."),
        fixed_k: str = typer.Option("1,2,3,4,5,6,7,8,9,10", "--fixed-k", help="Fixed candidate lengths K."),
        entropy_lams: str = typer.Option("0.3", "--entropy-lams",
                                         help="Thresholds of the AdaEDL-style entropy rule (empty: skip)."),
        sampling: bool = typer.Option(False, "--sampling/--greedy", help="Sampling at T=0.7, or greedy."),
        max_new_tokens: int = typer.Option(96, "--max-new-tokens", min=1),
        output_dir: Path = typer.Option(Path("bench-results"), "--output-dir",
                                        help="Folder for tables and plots (one subfolder per data set)."),
        dtype: str = typer.Option("float32", "--dtype", help="Model dtype: float32 (exact; fastest on CPUs "
                                                              "without native bfloat16) or bfloat16."),
        fast_cpu_linear: bool = typer.Option(True, "--fast-cpu-linear/--plain-linear",
                                             help="Use FewRowLinear layers in both models for every configuration "
                                                  "(float32 on CPU; see hf_specdecpp.models.cpu_linear)."),
        tiny: bool = typer.Option(False, "--tiny", help="Tiny random models, tokenizer and head (smoke test)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run saved in --output-dir: keep its "
                                                             "results and skip the prompts it already has (same "
                                                             "options required). Results are saved after every "
                                                             "prompt, so long runs can be split into sittings."),
    ) -> None:
        """Benchmark SpecDec++ against transformers' assisted generation, fixed K and entropy stopping."""
        from rich.console import Console

        from ..bench.configs import build_configs, real_prompts, specdec_config_name, tiny_setup
        from ..bench.runner import ResumeError, run_benchmark

        if dataset not in DATASETS:
            raise typer.BadParameter(f"{dataset!r} is not one of {', '.join(DATASETS)}", param_hint="--dataset")
        hs = _numbers(thresholds, float, "--thresholds") if thresholds else None
        if hs and any(not 0 < h < 1 for h in hs):
            raise typer.BadParameter("thresholds must lie strictly between 0 and 1", param_hint="--thresholds")
        budgets = _numbers(tree_budgets, int, "--tree-budgets") if tree_budgets.strip() else []
        if any(b < 1 for b in budgets):
            raise typer.BadParameter("tree budgets must be >= 1", param_hint="--tree-budgets")
        caps = _numbers(specdec_caps, int, "--specdec-caps") if specdec_caps.strip() else []
        if any(c < 1 for c in caps):
            raise typer.BadParameter("caps must be >= 1", param_hint="--specdec-caps")
        ks = _numbers(fixed_k, int, "--fixed-k")
        if any(k < 1 for k in ks):
            raise typer.BadParameter("K must be >= 1", param_hint="--fixed-k")
        lams = _numbers(entropy_lams, float, "--entropy-lams") if entropy_lams.strip() else []
        console = Console(stderr=True)
        if tiny:
            import torch

            torch.set_num_threads(1)  # tiny models run fastest on one thread
            target, draft, tokenizer, acceptance_head, sets = tiny_setup(subset or 2)
        else:
            from ..head import AcceptanceHead
            from ..assets import FetchError, load_pair
            from .common import parse_dtype_option

            torch_dtype = parse_dtype_option(dtype)
            try:
                target, draft, tokenizer = load_pair(torch_dtype, fast_cpu_linear=False)
                sets = real_prompts(dataset, subset, tokenizer)
            except FetchError as err:
                console.print(f"[bold red]Error:[/] {err}", highlight=False)
                raise typer.Exit(1) from None
            from ..head.shipped import default_head_name, load_shipped_head

            acceptance_head = AcceptanceHead.from_pretrained(head) if head else load_shipped_head(
                default_head_name(sampling))
        if fast_cpu_linear:
            from ..core.cpu_linear import use_fast_cpu_linear

            use_fast_cpu_linear(target)
            use_fast_cpu_linear(draft)
        h0 = acceptance_head.policy.threshold if acceptance_head is not None and acceptance_head.policy else None
        if hs is None:
            hs = [0.3, 0.5, 0.7] if h0 is None else sorted({round(h, 2) for h in (h0 - 0.2, h0, h0 + 0.2)
                                                           if 0 < round(h, 2) < 1})
        calibrated = specdec_config_name(h0) if h0 is not None else None  # paired with every other configuration
        output_dir.mkdir(parents=True, exist_ok=True)
        if acceptance_head is not None:
            from ..utils.io import write_json
            from ..bench.overhead import measure_head_overhead

            overhead = measure_head_overhead(draft, acceptance_head, temperature=0.7 if sampling else None)
            write_json(output_dir / "head_overhead.json", overhead)
            typer.echo(f"Head overhead: {1e3 * overhead['head_s']:.2f} ms per drafted token = "
                       f"{100 * overhead['overhead']:.2f}% of a draft step ({1e3 * overhead['draft_step_s']:.1f} ms)")
        for name, prompts in sets.items():
            configs = build_configs(ks, hs, lams, acceptance_head, max_candidates, budgets, caps)
            folder = output_dir / name

            def progress(prompt_id, config, rec):
                console.print(f"{name} {prompt_id} {config}: {rec.new_tokens} tokens in {rec.time_s:.2f}s",
                              highlight=False)

            try:
                result = run_benchmark(target, draft, tokenizer, prompts, configs, sampling=sampling,
                                       max_new_tokens=max_new_tokens, output_dir=folder, progress=progress,
                                       resume=resume, paired_with=calibrated if calibrated in configs else None)
            except ResumeError as err:
                console.print(f"[bold red]Error:[/] {err}", highlight=False)
                raise typer.Exit(1) from None
            typer.echo(f"\n## {name}\n")
            typer.echo(result.markdown())
            typer.echo(f"Tables and plots in {folder}")
