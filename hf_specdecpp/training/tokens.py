"""make-data's tokenisation and batching: prompt/response ids, the context budget, and padded batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .common import TrainingError
from .prompts import PromptRecord


def encode_record(record: PromptRecord, tokenizer, *, chat: bool, need_response: bool,
                  max_prompt_tokens: int, max_new_tokens: int, where: str = "") -> tuple[list[int], list[int] | None]:
    """Token ids of the prompt (chat template of the TARGET tokenizer for chat data; the last
    `max_prompt_tokens`) and of the dataset answer (the first `max_new_tokens`, when `need_response`)."""
    response = record.response
    if record.messages is not None:
        messages = list(record.messages)
        if messages[-1]["role"] == "assistant":
            last = messages.pop()
            if response is None:
                response = last["content"]
        if not messages:
            raise TrainingError(f"{where}: the conversation has no prompt before the assistant answer")
        prompt_ids = _chat_ids(tokenizer, messages, where)
    elif chat:
        prompt_ids = _chat_ids(tokenizer, [{"role": "user", "content": record.prompt}], where)
    else:
        prompt_ids = tokenizer(record.prompt, add_special_tokens=True)["input_ids"]
    prompt_ids = list(prompt_ids)[-max_prompt_tokens:]
    response_ids = None
    if need_response:
        if response is None:
            raise TrainingError(f"{where}: `--responses dataset` needs an answer (a response column/field or a final "
                                "assistant message)")
        response_ids = list(tokenizer(response, add_special_tokens=False)["input_ids"])[:max_new_tokens]
    return prompt_ids, response_ids


def _chat_ids(tokenizer, messages, where):
    if getattr(tokenizer, "chat_template", None) is None:
        raise TrainingError(f"{where}: chat data needs a tokenizer with a chat template (the target's has none)")
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def context_size(*models) -> int | None:
    """The smallest `max_position_embeddings` of the models (None when no config records one)."""
    sizes = []
    for model in models:
        size = getattr(model.config.get_text_config(), "max_position_embeddings", None)
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            sizes.append(size)
    return min(sizes) if sizes else None


def prompt_budget(max_prompt_tokens: int, max_new_tokens: int, context: int | None) -> int:
    """Prompt tokens kept so that prompt + `max_new_tokens` fit the models' `context` (longer prompts lose their
    beginning; make-data warns how many). Refuses a response limit that leaves no room for a prompt."""
    if context is None:
        return max_prompt_tokens
    if max_new_tokens >= context:
        raise TrainingError(f"max_new_tokens ({max_new_tokens}) leaves no room for a prompt in the models' context "
                            f"of {context} positions (config.max_position_embeddings); choose fewer new tokens.")
    return min(max_prompt_tokens, context - max_new_tokens)


def pack_batch(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    """Left-pad prompts to a common width P and right-pad responses to N: response i of every row sits at P + i.

    Returns (input_ids, attention_mask, position_ids, P, N); position ids count real tokens only.
    """
    P = max(len(p) for p in prompts)
    N = max(max((len(r) for r in responses), default=0), 1)
    B = len(prompts)
    ids = torch.full((B, P + N), pad_id, dtype=torch.long)
    mask = torch.zeros((B, P + N), dtype=torch.long)
    for b, (p, r) in enumerate(zip(prompts, responses)):
        ids[b, P - len(p):P] = torch.tensor(p, dtype=torch.long)
        mask[b, P - len(p):P] = 1
        if len(r):
            ids[b, P:P + len(r)] = torch.tensor(list(r), dtype=torch.long)
            mask[b, P:P + len(r)] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), position_ids.to(device), P, N
