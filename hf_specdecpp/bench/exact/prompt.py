"""One prompt in exact mode: greedy (record the trace, replay every replayable configuration and the oracle,
count real calls of the rest, e.g. draft trees) or sampling (count real calls of every configuration, once
per seed: sampled counts are random, so several seeds are run instead of a replay)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from ..calls import CallCounts, run_call
from ..configs import ORACLE, TARGET_ALONE
from .policies import Oracle
from .recorder import record_trace
from .records import COUNTED, REPLAY, ExactRecord
from .replay import Replayed, replay


def _from_replay(prompt_id: str, name: str, result: Replayed) -> ExactRecord:
    return ExactRecord(prompt_id, name, REPLAY, result.new_tokens, result.target_forwards, result.draft_forwards,
                       list(result.candidate_lengths), list(result.accepted_lengths), equal_to_target=True)


def _from_call(prompt_id: str, name: str, counts: CallCounts, seed: int | None, reference: list[int] | None,
               is_target: bool) -> ExactRecord:
    return ExactRecord(prompt_id, name, COUNTED, len(counts.tokens), counts.target_forwards, counts.draft_forwards,
                       [] if is_target else list(counts.candidate_lengths), list(counts.accepted_lengths),
                       list(counts.tree_sizes), seed,
                       None if reference is None else counts.tokens == reference)


def reference_output(target, draft, config, inputs: dict, max_new_tokens: int,
                     gen_kwargs: dict) -> CallCounts | None:
    """The greedy output from a real call of `config` (token-identical to target alone in float32; a
    speculative configuration is faster and its counts check the replay), or None for target alone."""
    if config == TARGET_ALONE:
        return None
    counts, _ = run_call(target, draft, config, inputs, gen_kwargs, max_new_tokens)
    return counts


def greedy_prompt(target, draft, prompt_id: str, inputs: dict, configs: dict, policies: dict, max_new_tokens: int,
                  gen_kwargs: dict, reference: str | None = None,
                  target_tokens: list[int] | None = None) -> tuple[list[ExactRecord], dict]:
    """Every configuration on one prompt under greedy decoding; (records, recording info with seconds and the
    greedy output). `reference` names the configuration whose real call gives the greedy output (default: target
    alone); `target_tokens` gives it (from a `GreedyCache`) instead."""
    clock = time.perf_counter()
    real = reference_output(target, draft, configs[reference], inputs, max_new_tokens, gen_kwargs) \
        if reference and target_tokens is None else None
    reference_s = time.perf_counter() - clock
    trace = record_trace(target, draft, prompt_id, inputs, max_new_tokens, gen_kwargs,
                         target_tokens=real.tokens if real is not None else target_tokens)
    if real is not None:
        trace.seconds["target_greedy"] = reference_s
    records = _greedy_records(target, draft, prompt_id, inputs, configs, policies, trace, max_new_tokens, gen_kwargs)
    info = _recording_info(trace, time.perf_counter() - clock) | {"target_tokens": list(trace.target_tokens),
                                                                   "cached_greedy": target_tokens is not None}
    if real is not None:
        replayed = next(r for r in records if r.config == reference)
        info["reference_counts_equal"] = (replayed.candidate_lengths, replayed.accepted_lengths) == (
            real.candidate_lengths, real.accepted_lengths)
    trace.release()
    return records, info


def _greedy_records(target, draft, prompt_id, inputs, configs, policies, trace, max_new_tokens, gen_kwargs):
    n, records = trace.new_tokens, []
    for name, config in configs.items():
        if config == TARGET_ALONE:
            records.append(ExactRecord(prompt_id, name, REPLAY, n, n, 0, equal_to_target=True))
        elif policies.get(name) is not None:
            records.append(_from_replay(prompt_id, name, replay(trace, policies[name])))
        else:
            counts, _ = run_call(target, draft, config, inputs, gen_kwargs, max_new_tokens)
            records.append(_from_call(prompt_id, name, counts, None, trace.target_tokens, False))
    records.append(_from_replay(prompt_id, ORACLE, replay(trace, Oracle())))
    return records


def _recording_info(trace, total_s: float) -> dict:
    """Where one prompt's time went: the greedy output, the draft path, the branch walk and branch steps (the
    recording), and the rest (replays and counted calls)."""
    branch_s = trace.recorder.seconds if trace.recorder is not None else 0.0
    info = dict(prompt_length=trace.prompt_length, new_tokens=trace.new_tokens, mismatches=len(trace.mismatches),
                branch_steps=trace.branch_steps(), **trace.seconds, branch_steps_s=branch_s)
    info["record_s"] = info["target_greedy"] + info["draft_path"] + info["branch_walk"] + branch_s
    info["replay_and_counted_s"] = total_s - info["record_s"]
    return info


def sampled_prompt(target, draft, prompt_id: str, inputs: dict, configs: dict, max_new_tokens: int,
                   gen_kwargs: dict, seeds: Sequence[int]) -> tuple[list[ExactRecord], dict]:
    """Every configuration on one prompt, once per seed (the RNG seeded before each call); counts only."""
    records, clock = [], time.perf_counter()
    for seed in seeds:
        for name, config in configs.items():
            torch.manual_seed(seed)
            counts, _ = run_call(target, draft, config, inputs, gen_kwargs, max_new_tokens)
            records.append(_from_call(prompt_id, name, counts, seed, None, config == TARGET_ALONE))
    return records, dict(prompt_length=inputs["input_ids"].shape[1], counted_s=time.perf_counter() - clock)
