"""Replaying a policy on a prompt's greedy trace: the exact rounds, candidates, acceptances and forward passes
the real generate() call makes.

A round starting at new position i may draft at most `min(cap, max_new_tokens - i - 1)` candidates (room for
the target's own token; none when that is 0). The policy is asked after every drafted step, min_candidates and
the cap override it, and a drafted EOS ends the round, as in the drafting loops. The target accepts the leading
candidates that agree with its output y, then adds its own token; tokens past the end of y (EOS or the length
limit) are cut, and the accepted count the loop reports is the added tokens minus one. Each round is one
target forward pass; each drafted candidate one draft forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .policies import Oracle, Policy
from .records import RoundTotals
from .traces import PromptTrace


@dataclass
class Replayed(RoundTotals):
    """The counts of one replayed call: one target pass per round, one draft pass per candidate."""

    new_tokens: int
    candidate_lengths: list[int] = field(default_factory=list)
    accepted_lengths: list[int] = field(default_factory=list)

    @property
    def target_forwards(self) -> int:
        return self.rounds

    @property
    def draft_forwards(self) -> int:
        return self.drafted_tokens


def replay(trace: PromptTrace, policy: Policy) -> Replayed:
    """The rounds `policy` makes on `trace` (see the module docstring)."""
    state = policy.start_call()
    out = Replayed(trace.new_tokens)
    position = 0
    while position < trace.new_tokens:
        limit = min(policy.cap(state), trace.max_new_tokens - position - 1)
        drafted = _round(trace, policy, state, position, limit)
        added = min(min(drafted, trace.agree_run(position)) + 1, trace.new_tokens - position)
        policy.end_round(state, drafted, added - 1)
        out.candidate_lengths.append(drafted)
        out.accepted_lengths.append(added - 1)
        position += added
    return out


def _round(trace: PromptTrace, policy: Policy, state, start: int, limit: int) -> int:
    """Candidates drafted in the round starting at `start`, at most `limit`."""
    if limit < 1:
        return 0
    if isinstance(policy, Oracle):
        return policy.round_length(trace, start, limit)
    policy.start_round(state)
    for step in range(limit):
        steps, index = trace.step(start, start + step)
        stop = policy.stop(state, steps, index, step)
        if step + 1 < policy.min_candidates:
            stop = False
        if stop or steps.tokens[index] in trace.eos or step + 1 >= limit:
            return step + 1
    return limit
