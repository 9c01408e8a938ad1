"""What the benchmark runs on: the tiny smoke-test pair or the real pair (on a chosen device and dtype), the
acceptance head, and the prompt sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch


@dataclass
class BenchSetup:
    """Models, tokenizer, head and prompt sets (`{set name: [Prompt, ...]}`) of one benchmark command."""

    target: Any
    draft: Any
    tokenizer: Any
    head: Any
    sets: dict


def tiny_setup(subset: int, device: str | None = None) -> BenchSetup:
    """The tiny random pair with a random (sharpened) head and `subset` word prompts: for smoke tests only."""
    from .. import AcceptanceHead
    from ..assets.prompts import Prompt, chat_prompt
    from ..testing import tiny_pair, tiny_prompts, tiny_tokenizer

    target, draft = tiny_pair(noise=0.05)
    if device is not None:
        target.to(device)
        draft.to(device)
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    head = AcceptanceHead(draft.config.hidden_size, 2)
    with torch.no_grad():
        head.classifier.weight.mul_(20.0)
        head.classifier.bias.fill_(1.0)
    prompts = [Prompt(f"tiny/{i}", chat_prompt(tokenizer, p["prompt"])) for i, p in enumerate(tiny_prompts(subset))]
    return BenchSetup(target, draft, tokenizer, head, {"tiny": prompts})


def real_setup(dataset: str, subset: Optional[int], dtype: torch.dtype, device: str | None, device_map: str | None,
               head: str | None, sampling: bool, fast_cpu_linear: bool) -> BenchSetup:
    """The real pair (`assets.load_pair`: fetched when needed) on `device` or `device_map`, the head (a local
    folder or Hub repo, default the shipped head for this decoding) and the prompt sets."""
    from .. import AcceptanceHead, load_shipped_head
    from ..assets import load_pair
    from ..head.shipped import default_head_name

    target, draft, tokenizer = load_pair(dtype, device=device, device_map=device_map, fast_cpu_linear=fast_cpu_linear)
    acceptance_head = AcceptanceHead.from_pretrained(head) if head else load_shipped_head(default_head_name(sampling))
    return BenchSetup(target, draft, tokenizer, acceptance_head, real_prompts(dataset, subset, tokenizer))


def real_prompts(dataset: str, subset: Optional[int], tokenizer) -> dict:
    """HumanEval tasks 0-79 ("Complete the following Python function:" + the task) and MT-Bench first turns
    ("both"), or the ShareGPT tuning prompts ("sharegpt": where methods' parameters are chosen), chat template
    applied; the first `subset` of each set. HumanEval tasks 80-163 are reserved and never used."""
    from ..assets.prompts import (HUMANEVAL_TASKS, Prompt, chat_prompt, humaneval_prompts, mtbench_prompts,
                                  sharegpt_tuning_prompts)

    out = {}
    if dataset in ("humaneval", "both"):
        tasks = humaneval_prompts(HUMANEVAL_TASKS)[:subset]
        out["humaneval"] = [Prompt(p.id, chat_prompt(tokenizer, "Complete the following Python function:\n" + p.text))
                            for p in tasks]
    if dataset in ("mtbench", "both"):
        out["mtbench"] = [Prompt(p.id, chat_prompt(tokenizer, p.text), p.category)
                          for p in mtbench_prompts()[:subset]]
    if dataset == "sharegpt":
        out["sharegpt"] = [Prompt(p.id, chat_prompt(tokenizer, p.text)) for p in sharegpt_tuning_prompts()[:subset]]
    return out
