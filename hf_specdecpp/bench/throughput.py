"""Batch throughput: generated tokens per second over a whole left-padded batch, for the target alone
(transformers' batched greedy generate) and each speculative method, at several batch sizes, interleaved.

Each repeat runs every (batch size, configuration) once, the configurations of a batch size back to back in an
order that rotates per repeat, so slow drifts of a shared machine hit all of them alike. Tokens count the new
tokens of every row up to and including its EOS; forward passes come from the method's statistics (the target
alone: one pass per step).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from ..utils.timing import timed
from .summary import geometric_mean

TARGET_ALONE = "target"


@dataclass
class BatchRun:
    """One timed generate() call of one configuration on one batch."""

    config: str
    batch_size: int
    repeat: int
    seconds: float
    new_tokens: int
    target_forwards: int
    draft_forwards: int

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds


def count_new_tokens(sequences: torch.Tensor, prompt_width: int, eos_ids: set[int]) -> int:
    """New tokens of every row, up to and including its first EOS (the rest is padding)."""
    total = 0
    for row in sequences[:, prompt_width:].tolist():
        end = next((i + 1 for i, token in enumerate(row) if token in eos_ids), len(row))
        total += end
    return total


def _one_call(target, draft, config, inputs: dict, max_new_tokens: int, eos_ids: set[int]) -> tuple:
    kwargs = dict(inputs, max_new_tokens=max_new_tokens, do_sample=False)
    if config == TARGET_ALONE:
        out, seconds = timed(lambda: target.generate(**kwargs), target)
        new = count_new_tokens(out, inputs["input_ids"].shape[1], eos_ids)
        return seconds, new, out.shape[1] - inputs["input_ids"].shape[1], 0
    out, seconds = timed(lambda: target.generate(**kwargs, assistant_model=draft, candidate_generator=config), target)
    stats = config.stats
    return seconds, count_new_tokens(out, inputs["input_ids"].shape[1], eos_ids), stats.target_forwards, \
        stats.draft_forwards


def _encode(tokenizer, prompts: Sequence[str], device) -> dict:
    """The left-padded batch of `prompts` on `device` (input ids and attention mask)."""
    inputs = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    return {k: v.to(device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}


def batch_throughput(target, draft, tokenizer, prompts: Sequence[str], configs: dict, batch_sizes: Sequence[int],
                     repeats: int, max_new_tokens: int,
                     progress: Callable[[BatchRun], None] | None = None) -> list[BatchRun]:
    """Every configuration at every batch size (the first `b` prompts), `repeats` times, interleaved, after one
    untimed short call of each."""
    if max(batch_sizes) > len(prompts):
        raise ValueError(f"batch size {max(batch_sizes)} needs as many prompts, got {len(prompts)}")
    tokenizer.padding_side = "left"
    eos = target.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    configs = {TARGET_ALONE: TARGET_ALONE, **configs}
    names = list(configs)
    for name in names:  # untimed first calls: allocations, lazy imports, a re-calibration at first use
        _one_call(target, draft, configs[name], _encode(tokenizer, prompts[:1], target.device), 4, eos_ids)
    batches = {b: _encode(tokenizer, prompts[:b], target.device) for b in batch_sizes}
    runs = []
    for repeat in range(repeats):
        for b in batch_sizes:
            inputs = batches[b]
            order = names[repeat % len(names):] + names[:repeat % len(names)]
            for name in order:
                seconds, new, target_fw, draft_fw = _one_call(target, draft, configs[name], inputs, max_new_tokens,
                                                              eos_ids)
                runs.append(BatchRun(name, b, repeat, seconds, new, target_fw, draft_fw))
                if progress is not None:
                    progress(runs[-1])
    return runs


def throughput_table(runs: Sequence[BatchRun]) -> list[dict]:
    """Per (configuration, batch size): median tokens/s, forward passes per token, and the paired ratio of its
    time to the target alone's on the same repeat (geometric mean, with the min-max range over repeats)."""
    rows = []
    keys = sorted({(r.batch_size, r.config) for r in runs}, key=lambda k: (k[0], k[1] != TARGET_ALONE, k[1]))
    for b, name in keys:
        mine = [r for r in runs if (r.batch_size, r.config) == (b, name)]
        reference = {r.repeat: r for r in runs if (r.batch_size, r.config) == (b, TARGET_ALONE)}
        ratios = [reference[r.repeat].seconds / r.seconds * r.new_tokens / max(reference[r.repeat].new_tokens, 1)
                  for r in mine if r.repeat in reference]
        tokens = sum(r.new_tokens for r in mine)
        rows.append(dict(batch_size=b, config=name, tokens_per_second=statistics.median(
            r.tokens_per_second for r in mine), speedup=geometric_mean(ratios), speedup_min=min(ratios, default=math.nan),
            speedup_max=max(ratios, default=math.nan), target_fw_per_token=sum(r.target_forwards for r in mine) / tokens,
            draft_fw_per_token=sum(r.draft_forwards for r in mine) / tokens, repeats=len(mine)))
    return rows


def throughput_markdown(rows: Sequence[dict], machine: str) -> str:
    lines = [f"Batch throughput ({machine}); speed-up: tokens/s over the target alone's at the same batch size, "
             "paired per repeat (geometric mean, range).", "",
             "| batch | config | tokens/s | speed-up (range) | target fw/token | draft fw/token | repeats |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['batch_size']} | {r['config']} | {r['tokens_per_second']:.1f} | {r['speedup']:.2f}x "
                     f"({r['speedup_min']:.2f}-{r['speedup_max']:.2f}) | {r['target_fw_per_token']:.3f} | "
                     f"{r['draft_fw_per_token']:.3f} | {r['repeats']} |")
    return "\n".join(lines) + "\n"


def runs_to_json(runs: Sequence[BatchRun]) -> list[dict]:
    return [asdict(r) for r in runs]
