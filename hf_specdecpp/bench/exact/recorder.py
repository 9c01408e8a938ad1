"""Recording a prompt's greedy trace: the target's greedy output, one teacher-forced draft pass along it, and the
draft's own continuations after each mismatch (computed on demand; see `traces`).

The draft is run as the drafting loops run it: its logits mapped onto the target's vocabulary
(`core.pair.VocabMap`), in float32, with the last hidden state of the pass that produced each token. Exact mode
assumes plain greedy decoding (no logits processors: the benchmark's `decoding_kwargs`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable

import torch

from ...core.compat import cache_kwargs
from ...core.pair import VocabMap, output_vocab_size
from ...head import confidence_features
from .traces import Branch, PromptTrace, Steps


def eos_ids(model, eos_token_id=None) -> frozenset[int]:
    """The EOS ids generate() stops at: `eos_token_id` when given, else the model's generation config."""
    eos = eos_token_id if eos_token_id is not None else model.generation_config.eos_token_id
    if eos is None:
        return frozenset()
    return frozenset([eos] if isinstance(eos, int) else [int(e) for e in eos])


def steps_from_logits(logits: torch.Tensor, hidden: torch.Tensor, vocab: VocabMap) -> Steps:
    """Steps for draft `logits` `(n, V_draft)` produced by hidden states `(n, H)`: greedy tokens and the features
    the stop rules compute from the processed scores (computed exactly as they do, row by row in float32)."""
    scores = vocab.draft_scores_for_target(logits).float()
    tokens = scores.argmax(dim=-1)
    probs = torch.softmax(scores, dim=-1)
    return Steps(tokens.tolist(), probs.max(dim=-1).values.cpu(), torch.special.entr(probs).sum(dim=-1).cpu(),
                 confidence_features(scores, tokens).cpu(), hidden.float().cpu())


def _forward(draft, ids: torch.LongTensor, cache, keep: int):
    device = next(draft.parameters()).device
    out = draft(input_ids=ids.to(device), **cache_kwargs(draft, cache), use_cache=True, output_hidden_states=True,
                logits_to_keep=keep)
    return out.logits[0, -keep:], out.hidden_states[-1][0, -keep:]


@torch.no_grad()
def target_greedy(target, inputs: dict, max_new_tokens: int, gen_kwargs: dict) -> list[int]:
    """The target's greedy output (new tokens) for `inputs`."""
    out = target.generate(**inputs, max_new_tokens=max_new_tokens, **gen_kwargs)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


@torch.no_grad()
def path_steps(draft, input_ids: torch.LongTensor, target_tokens: list[int], vocab: VocabMap) -> Steps:
    """The draft at every new position p given the prompt and y_<p: one teacher-forced pass."""
    from transformers import DynamicCache

    n = len(target_tokens)
    full = torch.cat([input_ids.cpu(), torch.tensor([target_tokens[:-1]], dtype=torch.long)], dim=1)
    logits, hidden = _forward(draft, full, DynamicCache(config=draft.config), n)
    return steps_from_logits(logits, hidden, vocab)


class BranchRecorder:
    """Keeps the draft's cache at each mismatch (walking the prompt and y once) and extends branches on demand."""

    def __init__(self, draft, vocab: VocabMap, trace: PromptTrace, input_ids: torch.LongTensor):
        self.draft = draft
        self.vocab = vocab
        self.trace = trace
        self.last_position = trace.max_new_tokens - 2  # the last position a round can draft
        self.seconds = 0.0
        self._walk(input_ids)

    @torch.no_grad()
    def _walk(self, input_ids: torch.LongTensor) -> None:
        from transformers import DynamicCache

        trace, y = self.trace, self.trace.target_tokens
        cache = DynamicCache(config=self.draft.config)
        _forward(self.draft, input_ids.cpu(), cache, 1)
        done = 0
        for m in trace.mismatches:
            if m > done:
                _forward(self.draft, torch.tensor([y[done:m]]), cache, 1)
                done = m
            ended = trace.path.tokens[m] in trace.eos or m >= self.last_position
            trace.branches[m] = Branch(Steps(), None if ended else copy.deepcopy(cache), ended, self.extend)

    @torch.no_grad()
    def extend(self, branch: Branch, length: int) -> None:
        """Draft greedily on `branch` until it holds `length` steps, drafts EOS or reaches the last position."""
        start = time.perf_counter()
        m = next(p for p, b in self.trace.branches.items() if b is branch)
        while len(branch.steps) < length and not branch.ended:
            last = branch.steps.tokens[-1] if len(branch.steps) else self.trace.path.tokens[m]
            logits, hidden = _forward(self.draft, torch.tensor([[last]]), branch.cache, 1)
            step = steps_from_logits(logits, hidden, self.vocab)
            branch.steps.extend(step)
            position = m + len(branch.steps)
            branch.ended = step.tokens[0] in self.trace.eos or position >= self.last_position
        if branch.ended:
            branch.cache = None
        self.seconds += time.perf_counter() - start


def record_trace(target, draft, prompt_id: str, inputs: dict, max_new_tokens: int, gen_kwargs: dict,
                 eos: Iterable[int] | None = None, target_tokens: list[int] | None = None) -> PromptTrace:
    """Record one prompt: the target's greedy output (unless `target_tokens` gives it), the draft's path and
    the caches its branches start from. `trace.seconds` holds the time of each part."""
    clock = time.perf_counter()
    input_ids = inputs["input_ids"]
    if target_tokens is None:
        target_tokens = target_greedy(target, inputs, max_new_tokens, gen_kwargs)
    seconds = {"target_greedy": time.perf_counter() - clock}
    vocab = VocabMap(output_vocab_size(target), output_vocab_size(draft))
    clock = time.perf_counter()
    path = path_steps(draft, input_ids, target_tokens, vocab) if target_tokens else Steps()
    seconds["draft_path"] = time.perf_counter() - clock
    trace = PromptTrace(prompt_id, input_ids.shape[1], max_new_tokens, frozenset(eos if eos is not None else
                                                                                  eos_ids(target)),
                        list(target_tokens), path, seconds=seconds)
    clock = time.perf_counter()
    recorder = BranchRecorder(draft, vocab, trace, input_ids)
    seconds["branch_walk"] = time.perf_counter() - clock
    trace.recorder = recorder
    return trace
