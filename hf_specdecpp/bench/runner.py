"""The timed benchmark: every configuration on every prompt, interleaved per prompt, wall-clock timed.

Prompt i runs the configurations in the order `rotation(names, i)`, so a burst of load on the machine spreads
over the configurations instead of shifting one of them. Every call is timed between device synchronisations
(`bench.calls`). For greedy decoding every output is compared token for token with the target-alone output, and
an oracle is computed (`bench.oracle`). Results are checkpointed after every prompt and a run can be resumed
(`bench.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .calls import decoding_kwargs, run_call
from .checkpoint import ResumeError, load_checkpoint, write_checkpoint
from .configs import TARGET_ALONE, describe_config, first_of, validate_configs
from .machine import machine_info
from .oracle import compute_oracle
from .outputs import write_outputs
from .paired import paired_ratios
from .records import BenchmarkResult, OracleRecord, Record
from .summary import summarize


def rotation(names: Sequence[str], index: int) -> list[str]:
    """`names` rotated left by `index` (prompt i starts with config i mod n)."""
    names = list(names)
    k = index % len(names) if names else 0
    return names[k:] + names[:k]


@dataclass
class _Run:
    """One benchmark run in progress: what to run and what it has recorded so far."""

    target: object
    draft: object
    tokenizer: object
    configs: dict
    gen_kwargs: dict
    settings: dict
    max_new_tokens: int
    sampling: bool
    seed: int
    paired_with: str | None
    records: list[Record] = field(default_factory=list)
    oracles: list[OracleRecord] = field(default_factory=list)
    run_order: list[tuple[str, str]] = field(default_factory=list)
    runs: int = 1

    @property
    def names(self) -> list[str]:
        return list(self.configs)

    def encode(self, text: str) -> dict:
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        return {"input_ids": enc["input_ids"].to(self.target.device),
                "attention_mask": enc["attention_mask"].to(self.target.device)}

    def result(self) -> BenchmarkResult:
        final = dict(self.settings, prompts=len({r.prompt_id for r in self.records}), runs=self.runs)
        paired = paired_ratios(self.records, self.paired_with) if self.paired_with and self.records else []
        return BenchmarkResult(self.records, self.oracles, summarize(self.records, self.oracles, self.names),
                               self.run_order, final, self.paired_with, paired)


def prompt_items(prompts: Sequence) -> list[tuple[str, str]]:
    """(id, text) of every prompt: strings get ids `prompt<i>`, objects give `.id` and `.text`."""
    items = [(getattr(p, "id", None) or f"prompt{i}", getattr(p, "text", p)) for i, p in enumerate(prompts)]
    if not items:
        raise ValueError("no prompts to benchmark")
    return items


def generation_kwargs(tokenizer, sampling: bool, temperature: float) -> dict:
    """The decoding settings of every call (`decoding_kwargs`) with the tokenizer's pad token."""
    kwargs = decoding_kwargs(sampling, temperature)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is not None:
        kwargs["pad_token_id"] = pad
    return kwargs


def run_benchmark(target, draft, tokenizer, prompts: Sequence, configs: dict, sampling: bool = False,
                  temperature: float = 0.7, max_new_tokens: int = 96, output_dir: str | Path | None = None,
                  warmup: bool = True, seed: int = 0, oracle: bool = True, progress=None, resume: bool = False,
                  paired_with: str | None = None, machine: dict | None = None) -> BenchmarkResult:
    """Run every configuration on every prompt, interleaved per prompt, and aggregate.

    `prompts`: strings or objects with `.id` and `.text`; the text is tokenized as is (apply the chat template
    before, e.g. with `chat_prompt`). Warm-up: one short untimed call of every configuration on the first prompt
    to run. With sampling, the RNG is seeded with `seed + prompt index` before every call. `progress(prompt_id,
    config, record)` is called after each timed call. With `output_dir`, the tables and plots are written there
    (`write_outputs`), and `results.json` after every prompt as a checkpoint.

    `resume=True` continues the run checkpointed in `output_dir`: its records are kept and prompts it already
    holds are skipped (same prompt ids; the settings must match, else `ResumeError`). Each prompt's
    configurations still run interleaved within one sitting, so per-prompt ratios stay paired; `settings["runs"]`
    counts the sittings. `paired_with` names the configuration every other one is compared with prompt by prompt
    (`paired_ratios`); default: the first SpecDec++ configuration, if any. `machine` (default:
    `bench.machine.machine_info(target)`) is saved with the settings and shown under the table.
    """
    run = _start(target, draft, tokenizer, configs, sampling, temperature, max_new_tokens, seed, paired_with)
    run.settings["machine"] = machine or machine_info(target)
    if resume:
        _resume(run, output_dir)
    done = {r.prompt_id for r in run.records}
    todo = [(i, item) for i, item in enumerate(prompt_items(prompts)) if item[0] not in done]
    if warmup and todo:
        _warm_up(run, run.encode(todo[0][1][1]))
    for index, (prompt_id, text) in todo:
        _run_prompt(run, index, prompt_id, run.encode(text), progress, oracle)
        if output_dir is not None:
            write_checkpoint(run.result(), Path(output_dir) / "results.json")
    result = run.result()
    if output_dir is not None:
        write_outputs(result, output_dir, run.configs)
    return result


def _start(target, draft, tokenizer, configs, sampling, temperature, max_new_tokens, seed, paired_with) -> _Run:
    configs = validate_configs(configs)
    if paired_with is None:
        paired_with = first_of(configs, "specdec++")
    elif paired_with not in configs:
        raise ValueError(f"paired_with={paired_with!r} is not one of the configurations {list(configs)}")
    settings = dict(sampling=sampling, temperature=temperature if sampling else None, max_new_tokens=max_new_tokens,
                    seed=seed, configs={n: describe_config(c) for n, c in configs.items()},
                    order="interleaved per prompt, rotating")
    return _Run(target, draft, tokenizer, configs, generation_kwargs(tokenizer, sampling, temperature), settings,
                max_new_tokens, sampling, seed, paired_with)


def _resume(run: _Run, output_dir) -> None:
    if output_dir is None:
        raise ResumeError("resume=True needs the output_dir of the run to continue")
    previous = load_checkpoint(Path(output_dir) / "results.json", run.settings)
    if previous is not None:
        run.records, run.oracles, run.run_order = previous.records, previous.oracle, previous.run_order
        run.runs = previous.settings.get("runs", 1) + 1


def _warm_up(run: _Run, inputs: dict) -> None:
    """One short untimed call of every configuration (first-call costs: allocations, lazy imports)."""
    for name in run.names:
        torch.manual_seed(run.seed)
        run_call(run.target, run.draft, run.configs[name], inputs, run.gen_kwargs, min(8, run.max_new_tokens))


def _run_prompt(run: _Run, index: int, prompt_id: str, inputs: dict, progress, oracle: bool) -> None:
    """Every configuration on one prompt, in this prompt's rotation; then speedups, equality and the oracle."""
    by_name: dict[str, Record] = {}
    for order, name in enumerate(rotation(run.names, index)):
        torch.manual_seed(run.seed + index)
        counts, seconds = run_call(run.target, run.draft, run.configs[name], inputs, run.gen_kwargs,
                                   run.max_new_tokens)
        rec = Record(prompt_id, name, order, seconds, len(counts.tokens), tokens=counts.tokens,
                     **counts.record_fields())
        by_name[name] = rec
        run.run_order.append((prompt_id, name))
        if progress is not None:
            progress(prompt_id, name, rec)
    reference = next(by_name[n] for n in run.names if run.configs[n] == TARGET_ALONE)
    for name in run.names:
        rec = by_name[name]
        rec.speedup = reference.time_s / rec.time_s if rec.time_s > 0 else None
        rec.equal_to_target = None if run.sampling else rec.tokens == reference.tokens
        run.records.append(rec)
    if oracle and not run.sampling:
        found = compute_oracle(run.target, run.draft, prompt_id, inputs["input_ids"], reference.tokens)
        if found is not None:
            run.oracles.append(found)
