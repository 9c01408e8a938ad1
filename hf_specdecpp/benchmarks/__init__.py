"""Benchmark inputs: the real prompt sets (HumanEval 0-79, MT-Bench, ShareGPT)."""

from .prompts import (
    RESERVED_HUMANEVAL_TASKS,
    Prompt,
    chat_prompt,
    humaneval_prompts,
    mtbench_prompts,
    sharegpt_prompts,
)

__all__ = [
    "RESERVED_HUMANEVAL_TASKS",
    "Prompt",
    "chat_prompt",
    "humaneval_prompts",
    "mtbench_prompts",
    "sharegpt_prompts",
]
