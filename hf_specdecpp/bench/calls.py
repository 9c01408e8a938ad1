"""One generate() call of one configuration and what it did: the one place the benchmark calls generate().

Counting: our decoding methods report their own statistics (`method.stats`, the latest call in this thread);
for transformers' own configurations forward pre-hooks on both models count the passes (per call, removed
afterwards) and read the width of every target pass, which gives each round's candidate count (the first pass
reads the prompt and the candidates, every later one the previous round's bonus token and the candidates).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..utils.timing import timed
from .configs import ASSISTED, HEURISTIC, HEURISTIC_START, TARGET_ALONE


@dataclass
class CallCounts:
    """What one call produced and how: new tokens, forward passes, and per round the candidates and accepted."""

    tokens: list[int]
    target_forwards: int
    draft_forwards: int
    rounds: int | None = None
    drafted_tokens: int | None = None
    accepted_tokens: int | None = None
    candidate_lengths: list[int] = field(default_factory=list)
    accepted_lengths: list[int] = field(default_factory=list)
    tree_sizes: list[int] = field(default_factory=list)

    def record_fields(self) -> dict:
        """The counts a benchmark `Record` keeps."""
        return dict(target_forwards=self.target_forwards, draft_forwards=self.draft_forwards, rounds=self.rounds,
                    drafted_tokens=self.drafted_tokens, accepted_tokens=self.accepted_tokens,
                    candidate_lengths=list(self.candidate_lengths))


def decoding_kwargs(sampling: bool, temperature: float = 0.7) -> dict:
    """Explicit decoding settings, overriding the checkpoints' generation_config (e.g. Qwen's
    repetition_penalty=1.1, top_k=20, top_p=0.8): greedy is plain argmax, sampling is plain temperature sampling."""
    if sampling:
        return dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0, repetition_penalty=1.0)
    return dict(do_sample=False, repetition_penalty=1.0)


class PassCounter:
    """Counts the forward passes of a module while active and records how many tokens each one read and the
    position of the first (kept as device tensors, read only after the call: no host synchronisation)."""

    def __init__(self, module: torch.nn.Module):
        self.widths: list[int] = []
        self._starts: list[torch.Tensor | None] = []
        self._handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.widths.append(int(ids.shape[1]) if ids is not None else 0)
        positions = kwargs.get("position_ids")
        self._starts.append(positions[0, :1] if positions is not None and positions.numel() else None)

    def starts(self) -> list[int] | None:
        """The position of every pass's first token (None when a pass had no position ids)."""
        if any(s is None for s in self._starts):
            return None
        return [int(s) for s in self._starts]

    @property
    def count(self) -> int:
        return len(self.widths)

    def remove(self) -> None:
        self._handle.remove()


def run_call(target, draft, config, inputs: dict, gen_kwargs: dict, max_new_tokens: int) -> tuple[CallCounts, float]:
    """One generate() call of `config` on `inputs`, timed between device synchronisations; (counts, seconds)."""
    kwargs = dict(inputs, max_new_tokens=max_new_tokens, **gen_kwargs)
    prompt_length = inputs["input_ids"].shape[1]
    if not isinstance(config, str):
        out, seconds = timed(lambda: target.generate(**kwargs, assistant_model=draft, candidate_generator=config),
                             target)
        return _method_counts(config.stats, out[0, prompt_length:].tolist()), seconds
    counters = (PassCounter(target), PassCounter(draft))
    saved = (draft.generation_config.num_assistant_tokens_schedule, draft.generation_config.num_assistant_tokens)
    try:
        if config == HEURISTIC:  # transformers writes the final count back after each call: start every call at 20
            draft.generation_config.num_assistant_tokens_schedule = "heuristic"
            draft.generation_config.num_assistant_tokens = HEURISTIC_START
        extra = {} if config == TARGET_ALONE else {"assistant_model": draft}
        out, seconds = timed(lambda: target.generate(**kwargs, **extra), target)
    finally:
        draft.generation_config.num_assistant_tokens_schedule, draft.generation_config.num_assistant_tokens = saved
        for counter in counters:
            counter.remove()
    tokens = out[0, prompt_length:].tolist()
    counts = _stock_counts(config, tokens, counters[0], counters[1].count, prompt_length)
    return counts, seconds


def _method_counts(stats, tokens: list[int]) -> CallCounts:
    return CallCounts(tokens, stats.target_forwards, stats.draft_forwards, stats.rounds, stats.drafted_tokens,
                      stats.accepted_tokens, list(stats.candidate_lengths), list(stats.accepted_lengths),
                      list(stats.tree_sizes))


def _stock_counts(config: str, tokens: list[int], target_passes: PassCounter, draft_forwards: int,
                  prompt_length: int) -> CallCounts:
    widths = target_passes.widths
    counts = CallCounts(tokens, len(widths), draft_forwards)
    if config in (ASSISTED, HEURISTIC) and widths:
        # one target pass per round; each round adds its accepted candidates + 1 token; one draft pass per candidate
        counts.candidate_lengths = [widths[0] - prompt_length] + [w - 1 for w in widths[1:]]
        counts.rounds = len(widths)
        counts.drafted_tokens = draft_forwards
        counts.accepted_tokens = max(len(tokens) - len(widths), 0)
        counts.accepted_lengths = _accepted_from_starts(target_passes.starts(), prompt_length, len(tokens))
    return counts


def _accepted_from_starts(starts: list[int] | None, prompt_length: int, new_tokens: int) -> list[int]:
    """Accepted candidates per round from where each target pass starts: pass r > 1 starts at the previous
    round's bonus token, i.e. at position prompt_length + (tokens after round r - 1) - 1."""
    if not starts:
        return []
    totals = [s - prompt_length + 1 for s in starts[1:]] + [new_tokens]
    return [b - a - 1 for a, b in zip([0, *totals[:-1]], totals)]
