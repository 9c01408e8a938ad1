"""The `hf-specdecpp bench` command's work (the CLI parses options into `BenchOptions` and calls `run_bench`):
load the models and prompt sets, build the configurations, and run the timed or the exact benchmark per set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .configs import build_configs, select_configs, specdec_config_name
from .machine import machine_info
from .models import BenchSetup, real_setup, tiny_setup


@dataclass
class BenchOptions:
    """Every option of `hf-specdecpp bench`, parsed and checked."""

    dataset: str = "both"
    subset: int | None = None
    head: str | None = None
    thresholds: list[float] | None = None
    max_candidates: int | None = None
    tree_budgets: list[int] = field(default_factory=list)
    specdec_caps: list[int] = field(default_factory=list)
    fixed_k: list[int] = field(default_factory=lambda: list(range(1, 11)))
    entropy_lams: list[float] = field(default_factory=lambda: [0.3])
    svip_hs: list[float] = field(default_factory=list)
    gammatune: bool = False
    sampling: bool = False
    max_new_tokens: int = 96
    output_dir: Path = Path("bench-results")
    dtype: str = "float32"
    device: str | None = None
    device_map: str | None = None
    fast_cpu_linear: bool = True
    tiny: bool = False
    resume: bool = False
    exact: bool = False
    seeds: int = 3
    validate: int = 0
    cost_repeats: int = 10
    costs_file: Path | None = None
    reference: str | None = None
    greedy_cache: Path | None = None
    only: list[str] = field(default_factory=list)


def load_setup(options: BenchOptions) -> BenchSetup:
    """The tiny pair (one thread: fastest for tiny models) or the real pair on the chosen device and dtype."""
    if options.tiny:
        torch.set_num_threads(1)
        setup = tiny_setup(options.subset or 2, options.device)
    else:
        setup = real_setup(options.dataset, options.subset, getattr(torch, options.dtype), options.device,
                           options.device_map, options.head, options.sampling, fast_cpu_linear=False)
    param = next(setup.target.parameters())
    if options.fast_cpu_linear and param.device.type == "cpu" and param.dtype == torch.float32:
        from ..core.cpu_linear import use_fast_cpu_linear

        use_fast_cpu_linear(setup.target)
        use_fast_cpu_linear(setup.draft)
    return setup


def default_thresholds(head) -> list[float]:
    """The head's calibrated h and h +- 0.2 (0.3, 0.5, 0.7 without a calibrated policy)."""
    h0 = head.policy.threshold if head is not None and head.policy else None
    if h0 is None:
        return [0.3, 0.5, 0.7]
    return sorted({round(h, 2) for h in (h0 - 0.2, h0, h0 + 0.2) if 0 < round(h, 2) < 1})


def _head_overhead(setup: BenchSetup, options: BenchOptions, echo: Callable[[str], None]) -> float:
    """The head's time per drafted token as a fraction of a draft step (saved to `head_overhead.json`)."""
    from ..utils.io import write_json
    from .overhead import measure_head_overhead

    overhead = measure_head_overhead(setup.draft, setup.head, temperature=0.7 if options.sampling else None)
    write_json(options.output_dir / "head_overhead.json", overhead)
    echo(f"Head overhead: {1e3 * overhead['head_s']:.2f} ms per drafted token = "
         f"{100 * overhead['overhead']:.2f}% of a draft step ({1e3 * overhead['draft_step_s']:.1f} ms)")
    return overhead["overhead"]


def run_bench(options: BenchOptions, echo: Callable[[str], None] = print,
              status: Callable[[str], None] = print) -> dict:
    """Run the benchmark on every prompt set; `echo` gets the tables, `status` the progress. Returns the results
    by set name."""
    setup = load_setup(options)
    thresholds = options.thresholds or default_thresholds(setup.head)
    options.output_dir.mkdir(parents=True, exist_ok=True)
    head_overhead = _head_overhead(setup, options, echo) if setup.head is not None else 0.0
    machine = dict(machine_info(setup.target), device_map=options.device_map)
    costs = exact_costs(setup, options, status) if options.exact else None
    results = {}
    for name, prompts in setup.sets.items():
        configs = build_configs(options.fixed_k, thresholds, options.entropy_lams, setup.head,
                                options.max_candidates, options.tree_budgets, options.specdec_caps, options.svip_hs,
                                options.gammatune)
        if options.only:
            configs = select_configs(configs, options.only)
        if options.exact:
            results[name], text = _run_exact(setup, options, name, prompts, configs, machine,
                                             (costs, head_overhead), status)
        else:
            results[name], text = _run_timed(setup, options, name, prompts, configs, machine, status)
        echo(f"\n## {name}\n")
        echo(text)
        echo(f"Tables and plots in {options.output_dir / name}")
    return results


def _run_timed(setup: BenchSetup, options: BenchOptions, name: str, prompts, configs: dict, machine: dict, status):
    """(The timed run's result, its tables in markdown)."""
    from .outputs import result_markdown
    from .runner import run_benchmark

    h0 = setup.head.policy.threshold if setup.head is not None and setup.head.policy else None
    calibrated = specdec_config_name(h0) if h0 is not None else None  # paired with every other configuration

    def progress(prompt_id, config, rec):
        status(f"{name} {prompt_id} {config}: {rec.new_tokens} tokens in {rec.time_s:.2f}s")

    result = run_benchmark(setup.target, setup.draft, setup.tokenizer, prompts, configs, sampling=options.sampling,
                           max_new_tokens=options.max_new_tokens, output_dir=options.output_dir / name,
                           progress=progress, resume=options.resume, machine=machine,
                           paired_with=calibrated if calibrated in configs else None)
    return result, result_markdown(result)


def exact_costs(setup: BenchSetup, options: BenchOptions, status):
    """The one cost curve every prompt set of an exact run uses: `--costs`, the one a resumed run saved, or
    measured now (interleaved; on a quiet machine only) and saved to `costs.json` in the output folder."""
    from ..utils.io import write_json
    from .exact.costs import measure_machine_costs

    saved = options.output_dir / "costs.json"
    if options.costs_file or (options.resume and saved.exists()):
        from ..core.costs import load_cost_curve

        return load_cost_curve(options.costs_file or saved)
    status("Measuring the cost curve (draft step, verify passes) ...")
    costs = measure_machine_costs(setup.draft, setup.target, 20, options.cost_repeats)
    write_json(saved, dict(costs=costs.to_dict(), machine=machine_info(setup.target)))
    return costs


def _run_exact(setup: BenchSetup, options: BenchOptions, name: str, prompts, configs: dict, machine: dict,
               costs: tuple, status):
    """(The exact run's result, its tables in markdown). `costs`: (the cost curve, the head's overhead per drafted
    token as a fraction of a draft step)."""
    from .exact.run import ExactOptions, run_exact

    def progress(prompt_id, info):
        seconds = ", ".join(f"{k} {v:.2f}s" for k, v in info.items() if k.endswith("_s") or k in (
            "target_greedy", "draft_path", "branch_walk"))
        status(f"{name} {prompt_id}: {seconds}")

    exact = ExactOptions(options.max_new_tokens, options.sampling, seeds=tuple(range(options.seeds)), costs=costs[0],
                         cost_repeats=options.cost_repeats, head_overhead=costs[1], validate_prompts=options.validate,
                         reference=options.reference, greedy_cache=options.greedy_cache,
                         output_dir=options.output_dir / name, resume=options.resume,
                         machine=machine)
    result = run_exact(setup.target, setup.draft, setup.tokenizer, prompts, configs, exact, progress)
    return result, result.markdown()
