"""What the draft shows a stop rule, recorded once per prompt so that every policy can be replayed exactly.

Under greedy decoding a round that starts at new position i proposes the draft's greedy tokens. While they
agree with the target's output y, the draft reads y itself, so its outputs at those positions are those of ONE
teacher-forced pass over the prompt and y (`PromptTrace.path`). At the round's first mismatch m the draft
proposes its own token d_m and keeps drafting from it until its stop rule fires: those outputs depend only on m
(the prefix y_<m and d_m), not on where the round started, so they are recorded once per mismatch position
(`Branch`), as far as any policy asks (`Branch.ensure`, computed on demand while the draft's cache is kept).

Every step keeps what the stop rules read: the drafted token, the draft's top-1 probability (transformers'
confidence rule and the "top1" estimator) and entropy (AdaEDL), the acceptance head's confidence features
(log q(token), log q_max, entropy) and the draft's last hidden state that produced the token (for the head).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Steps:
    """Drafting steps, column by column: `tokens` (n), `top1` and `entropy` (n, float32), `features` (n, 3) and
    `hidden` (n, H), all on the CPU."""

    tokens: list[int] = field(default_factory=list)
    top1: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    features: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    _head_cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.tokens)

    def extend(self, other: "Steps") -> None:
        """Append `other`'s steps (the head's cached predictions are recomputed on next use)."""
        self.tokens.extend(other.tokens)
        for name in ("top1", "entropy", "features", "hidden"):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, theirs if mine is None else torch.cat([mine, theirs]))
        self._head_cache.clear()

    def head_probabilities(self, head) -> torch.Tensor:
        """The head's acceptance prediction `(n,)` for every step's hidden state (and confidence features for
        producing-state heads), as `AcceptanceHead.score_step` computes it; cached per head."""
        key = id(head)
        cached = self._head_cache.get(key)
        if cached is None or cached[0] is not head or cached[1].shape[0] != len(self):
            device = next(head.parameters()).device
            with torch.no_grad():
                hidden = self.hidden.to(device).float()
                features = self.features.to(device) if head.scores_without_lag and head.use_confidence_features \
                    else None
                probs = head(hidden, features).float().cpu()
            self._head_cache[key] = cached = (head, probs)
        return cached[1]


@dataclass
class Branch:
    """The draft's greedy continuation after its mismatching token d_m at position m: step k (0-based) is the
    token at position m + 1 + k. `ended`: it drafted EOS or reached the last position a round can draft."""

    steps: Steps
    cache: Any = None
    ended: bool = False
    extend: Callable[["Branch", int], None] | None = None

    def ensure(self, length: int) -> None:
        """Compute steps until there are `length` (or the branch ended)."""
        if len(self.steps) >= length or self.ended:
            return
        if self.extend is None:
            raise RuntimeError(f"this branch holds {len(self.steps)} steps and a policy needs {length}; record "
                               "the traces again with the models at hand")
        self.extend(self, length)


@dataclass
class PromptTrace:
    """One prompt's greedy trace: the target's output `target_tokens` (y, N tokens), the draft's steps along it
    (`path`, N steps: step p is the draft at position p given the prompt and y_<p) and one `Branch` per
    mismatch position."""

    prompt_id: str
    prompt_length: int
    max_new_tokens: int
    eos: frozenset[int]
    target_tokens: list[int]
    path: Steps
    branches: dict[int, Branch] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    recorder: Any = field(default=None, repr=False)  # what computes branch steps on demand (None: nothing more)

    def __post_init__(self):
        n = len(self.target_tokens)
        self.mismatch_from = [n] * (n + 1)  # first mismatch position >= i (n: none)
        for i in range(n - 1, -1, -1):
            self.mismatch_from[i] = i if self.path.tokens[i] != self.target_tokens[i] else self.mismatch_from[i + 1]

    @property
    def new_tokens(self) -> int:
        return len(self.target_tokens)

    @property
    def mismatches(self) -> list[int]:
        return [p for p in range(self.new_tokens) if self.path.tokens[p] != self.target_tokens[p]]

    def agree_run(self, start: int) -> int:
        """How many draft proposals agree with y from position `start` on."""
        return self.mismatch_from[start] - start

    def step(self, start: int, position: int) -> tuple[Steps, int]:
        """(steps, index) of what the draft drafts at `position` in a round that started at `start`."""
        m = self.mismatch_from[start]
        if position <= m:
            return self.path, position
        branch = self.branches[m]
        k = position - m - 1
        branch.ensure(k + 1)
        if k >= len(branch.steps):
            raise IndexError(f"position {position} lies past the end of the branch at {m}")
        return branch.steps, k

    def branch_steps(self) -> int:
        """Steps computed on all branches so far."""
        return sum(len(b.steps) for b in self.branches.values())

    def release(self) -> None:
        """Drop the branches' draft caches (no more steps can be computed)."""
        for branch in self.branches.values():
            branch.cache, branch.extend = None, None
        self.recorder = None
