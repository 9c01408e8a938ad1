"""The exact benchmark: exact counts for every configuration on every prompt, turned into time with the cost
curve measured on this machine; optionally validated by the timed interleaved run on a subset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ...core.costs import CostCurve
from ..checkpoint import ResumeError
from ..configs import describe_config, names_of, validate_configs
from ..machine import machine_info
from ..runner import generation_kwargs, prompt_items
from .configs import policy_for
from .costs import cost_units, measure_machine_costs
from .greedy_cache import GreedyCache, greedy_key
from .outputs import ExactResult, load_exact_checkpoint, write_exact_checkpoint, write_exact_outputs
from .prompt import greedy_prompt, sampled_prompt
from .records import ExactRecord
from .summary import exact_summary
from .validate import validate


@dataclass
class ExactOptions:
    """How to run: decoding, seeds (sampling), the cost curve (given, or measured with `cost_repeats`) and the
    head's overhead per drafted token (a fraction of a draft step, added for configurations with a head), how many
    prompts to validate with wall-clock timing, which configuration's real call gives the greedy output (None:
    target alone), a file of greedy outputs shared between runs (`GreedyCache`), where to write, and whether to resume a saved run there."""

    max_new_tokens: int = 96
    sampling: bool = False
    temperature: float = 0.7
    seeds: Sequence[int] = (0,)
    costs: CostCurve | None = None
    cost_repeats: int = 10
    head_overhead: float = 0.0
    validate_prompts: int = 0
    reference: str | None = None
    greedy_cache: Path | None = None
    output_dir: Path | None = None
    resume: bool = False
    machine: dict = field(default_factory=dict)


def exact_settings(configs: dict, options: ExactOptions) -> dict:
    """What a resumed run must share with the saved one (the machine is recorded, not checked)."""
    return dict(mode="exact", sampling=options.sampling,
                temperature=options.temperature if options.sampling else None,
                max_new_tokens=options.max_new_tokens, seeds=list(options.seeds) if options.sampling else None,
                reference=options.reference,
                configs={n: describe_config(c) for n, c in configs.items()}, machine=options.machine)


def run_exact(target, draft, tokenizer, prompts: Sequence, configs: dict, options: ExactOptions,
              progress=None) -> ExactResult:
    """Exact counts for every configuration on every prompt (`bench.exact.prompt`), checkpointed after each
    prompt when `options.output_dir` is set; then costs, tables, plots and the optional validation.
    `progress(prompt_id, info)` is called after each prompt."""
    configs = validate_configs(configs)
    if options.reference is not None and options.reference not in configs:
        raise ValueError(f"reference={options.reference!r} is not one of the configurations {list(configs)}")
    if not options.machine:
        options = replace(options, machine=machine_info(target))
    settings = exact_settings(configs, options)
    records, info, runs, saved_costs = _resume(options, settings)
    result = ExactResult(records, [], dict(settings, runs=runs + 1), options.costs or saved_costs, info,
                         specdec_names=names_of(configs, "specdec++"))
    if result.costs is None:
        result.costs = measure_machine_costs(draft, target, 20, options.cost_repeats)
    gen_kwargs = generation_kwargs(tokenizer, options.sampling, options.temperature)
    policies = {n: policy_for(c, target, draft) for n, c in configs.items()}
    cache = GreedyCache(options.greedy_cache) if options.greedy_cache is not None else None
    for prompt_id, text in prompt_items(prompts):
        if prompt_id in result.prompt_info:
            continue
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        inputs = {k: enc[k].to(target.device) for k in ("input_ids", "attention_mask")}
        if options.sampling:
            recs, prompt_info = sampled_prompt(target, draft, prompt_id, inputs, configs, options.max_new_tokens,
                                               gen_kwargs, options.seeds)
        else:
            key = greedy_key(target, inputs["input_ids"], options.max_new_tokens)
            recs, prompt_info = greedy_prompt(target, draft, prompt_id, inputs, configs, policies,
                                              options.max_new_tokens, gen_kwargs, options.reference,
                                              cache.get(key) if cache is not None else None)
            if cache is not None and cache.get(key) is None:
                cache.put(key, prompt_info["target_tokens"])
        result.records.extend(recs)
        result.prompt_info[prompt_id] = prompt_info
        if options.output_dir is not None:
            write_exact_checkpoint(result, Path(options.output_dir))
        if progress is not None:
            progress(prompt_id, prompt_info)
    return _finish(result, configs, target, draft, tokenizer, prompts, options, progress)


def _resume(options: ExactOptions, settings: dict) -> tuple[list[ExactRecord], dict, int, CostCurve | None]:
    if not options.resume:
        return [], {}, 0, None
    if options.output_dir is None:
        raise ResumeError("resume=True needs the output folder of the run to continue")
    return load_exact_checkpoint(Path(options.output_dir), settings)


def _finish(result: ExactResult, configs: dict, target, draft, tokenizer, prompts, options: ExactOptions,
            progress) -> ExactResult:
    with_head = {n for n, c in configs.items() if getattr(c, "head", None) is not None}
    for record in result.records:
        record.units = cost_units(record, result.costs, options.head_overhead if record.config in with_head else 0.0)
    result.summary = exact_summary(result.records, list(configs))
    result.settings.update(prompts=len(result.prompt_info), head_overhead=options.head_overhead)
    if options.validate_prompts and options.output_dir is not None:
        subset = list(prompts)[: options.validate_prompts]
        timed_progress = (lambda p, c, r: progress(f"{p} {c}", {"validation_s": r.time_s})) if progress else None
        result.validation = validate(target, draft, tokenizer, subset, configs, result.records, result.costs,
                                     Path(options.output_dir) / "validation", sampling=options.sampling,
                                     temperature=options.temperature, max_new_tokens=options.max_new_tokens,
                                     progress=timed_progress, machine=options.machine)
    if options.output_dir is not None:
        write_exact_outputs(result, Path(options.output_dir))
    return result
