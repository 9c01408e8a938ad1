"""The benchmark's standard configuration set and its prompt sets (tiny or real)."""

from __future__ import annotations

from typing import Optional

from .. import (
    DySpecCandidateGenerator,
    EntropyStoppingCandidateGenerator,
    FixedLengthCandidateGenerator,
    SpecDecPPCandidateGenerator,
)
from ..head import DEFAULT_MAX_CANDIDATES


def specdec_config_name(threshold: float) -> str:
    """The name `build_configs` gives SpecDec++ at `threshold` (with the head's calibrated cap)."""
    return f"specdec++-h{threshold:g}"


def build_configs(fixed_k, thresholds, entropy_lams, head=None, max_candidates: int | None = None,
                  tree_budgets=(), specdec_caps=()) -> dict:
    """The standard configuration set: target alone, transformers default and heuristic, fixed K, entropy
    stopping (AdaEDL-style), SpecDec++ at each threshold (when a head is given; `max_candidates` None = the
    head's calibrated cap), SpecDec++ at the head's own threshold with each cap of `specdec_caps`, and DySpec
    trees at each budget (draft-guided, and head-guided with a head)."""
    from .runner import ASSISTED, HEURISTIC, TARGET_ALONE

    configs: dict = {"target": TARGET_ALONE, "hf-default": ASSISTED, "hf-heuristic": HEURISTIC}
    for k in fixed_k:
        configs[f"fixed-K{k}"] = FixedLengthCandidateGenerator(num_candidates=k)
    for lam in entropy_lams:
        configs[f"entropy-{lam:g}"] = EntropyStoppingCandidateGenerator(
            lam=lam, max_candidates=max_candidates or DEFAULT_MAX_CANDIDATES)
    if head is not None:
        for h in thresholds:
            configs[specdec_config_name(h)] = SpecDecPPCandidateGenerator(head=head, threshold=h,
                                                                          max_candidates=max_candidates)
        for cap in specdec_caps:
            h = head.policy.threshold if head.policy is not None else thresholds[0]
            configs[f"{specdec_config_name(h)}-cap{cap}"] = SpecDecPPCandidateGenerator(
                head=head, threshold=h, max_candidates=cap)
    for budget in tree_budgets:
        configs[f"dyspec-B{budget}"] = DySpecCandidateGenerator(budget=budget)
        if head is not None:
            configs[f"dyspec+head-B{budget}"] = DySpecCandidateGenerator(budget=budget, head=head)
    return configs


def tiny_setup(subset: int):
    import torch

    from ..head import AcceptanceHead
    from ..testing import tiny_pair, tiny_prompts, tiny_tokenizer
    from ..assets.prompts import Prompt, chat_prompt

    target, draft = tiny_pair(noise=0.05)
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    head = AcceptanceHead(draft.config.hidden_size, 2)  # random: for smoke tests only
    with torch.no_grad():
        head.classifier.weight.mul_(20.0)
        head.classifier.bias.fill_(1.0)
    prompts = [Prompt(f"tiny/{i}", chat_prompt(tokenizer, p["prompt"])) for i, p in enumerate(tiny_prompts(subset))]
    return target, draft, tokenizer, head, {"tiny": prompts}


def real_prompts(dataset: str, subset: Optional[int], tokenizer) -> dict:
    from ..assets.prompts import Prompt, chat_prompt, humaneval_prompts, mtbench_prompts

    out = {}
    if dataset in ("humaneval", "both"):
        tasks = humaneval_prompts(range(0, 80))[:subset]
        out["humaneval"] = [Prompt(p.id, chat_prompt(tokenizer, "Complete the following Python function:\n" + p.text))
                            for p in tasks]
    if dataset in ("mtbench", "both"):
        out["mtbench"] = [Prompt(p.id, chat_prompt(tokenizer, p.text), p.category)
                          for p in mtbench_prompts()[:subset]]
    return out


