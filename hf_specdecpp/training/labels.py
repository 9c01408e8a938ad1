"""Acceptance labels and token mixing: pure tensor functions, no models involved.

A drafted token Y is accepted by speculative sampling with probability `min(1, p(Y) / q(Y))`, where `p` and `q`
are the target's and the draft's next-token distributions AFTER the logits processing of the decoding being
served (temperature, top-k, top-p). Greedy decoding accepts Y iff it is the target's argmax.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper


@dataclass(frozen=True)
class DecodingSettings:
    """The decoding the head will serve. `temperature == 0` means greedy (top-k / top-p are then ignored).

    Args:
        temperature (`float`, *optional*, defaults to 0.0): the sampling temperature, >= 0 (0: greedy).
        top_p (`float`, *optional*, defaults to 1.0): nucleus sampling's mass, in (0, 1] (1: off).
        top_k (`int`, *optional*, defaults to 0): keep the k most likely tokens, >= 0 (0: off).

    Raises:
        ValueError: a setting outside its range.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["do_sample"] = not self.greedy
        return d

    def generation_kwargs(self) -> dict:
        """Keyword arguments for `GenerationConfig` reproducing exactly this decoding (and nothing else)."""
        if self.greedy:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}

    def describe(self) -> str:
        if self.greedy:
            return "greedy"
        parts = [f"temperature {self.temperature:g}"]
        if self.top_p < 1:
            parts.append(f"top-p {self.top_p:g}")
        if self.top_k:
            parts.append(f"top-k {self.top_k}")
        return "sampling, " + ", ".join(parts)


def logits_processors(settings: DecodingSettings) -> LogitsProcessorList:
    """transformers' own warpers, in the order `generate()` applies them (temperature, top-k, top-p).

    Args:
        settings (`DecodingSettings`): the decoding to reproduce.

    Returns:
        `LogitsProcessorList`: empty for greedy decoding; else a `TemperatureLogitsWarper` (unless the temperature
        is 1), a `TopKLogitsWarper` (if `top_k` > 0) and a `TopPLogitsWarper` (if `top_p` < 1).
    """
    processors = LogitsProcessorList()
    if settings.greedy:
        return processors
    if settings.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(settings.temperature))
    if settings.top_k:
        processors.append(TopKLogitsWarper(top_k=settings.top_k, min_tokens_to_keep=1))
    if settings.top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=settings.top_p, min_tokens_to_keep=1))
    return processors


def process_logits(logits: torch.Tensor, settings: DecodingSettings) -> torch.Tensor:
    """Apply the decoding's warpers to `(N, V)` logits (in float32); greedy returns them unchanged.

    Args:
        logits (`torch.Tensor` of shape `(N, V)`): raw next-token logits, one row per position.
        settings (`DecodingSettings`): the decoding whose warpers to apply (see `logits_processors`).

    Returns:
        `torch.Tensor` of shape `(N, V)`: the processed logits in float32 (`-inf` where top-k / top-p removed a
        token); for greedy decoding the logits themselves, cast to float32.
    """
    logits = logits.float()
    processors = logits_processors(settings)
    if len(processors) == 0:
        return logits
    # The warpers used here do not look at the input ids; an empty context satisfies their signature.
    dummy_ids = torch.zeros((logits.shape[0], 0), dtype=torch.long, device=logits.device)
    return processors(dummy_ids, logits)


def acceptance_labels(
    target_logits: torch.Tensor,
    draft_logits: torch.Tensor,
    settings: DecodingSettings,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draft tokens Y `(N,)` and their acceptance labels `(N,)` from raw logits `(N, V)` at the same positions.

    Greedy: Y = draft argmax, label = 1.0 iff Y equals the target argmax (exact, hard labels).
    Sampling: Y ~ softmax(processed draft logits), label = min(1, p(Y)/q(Y)) computed in log space with the
    processed distributions of both models (0 where the target's processing removed Y).

    Args:
        target_logits (`torch.Tensor` of shape `(N, V)`): the target's raw logits.
        draft_logits (`torch.Tensor` of shape `(N, V)`): the draft's raw logits at the same positions.
        settings (`DecodingSettings`): the decoding served; both models' logits are processed with it.
        generator (`torch.Generator`, *optional*, defaults to `None`): the random source of the draws of Y when
            sampling (unused for greedy decoding).

    Returns:
        `tuple[torch.LongTensor, torch.Tensor]`: the draft tokens Y of shape `(N,)` and their float32 acceptance
        labels of shape `(N,)`, in [0, 1].

    Raises:
        ValueError: the two logit tensors differ in shape.
    """
    if target_logits.shape != draft_logits.shape:
        raise ValueError(f"logit shapes differ: target {tuple(target_logits.shape)}, draft {tuple(draft_logits.shape)}")
    if settings.greedy:
        draft_tokens = draft_logits.argmax(dim=-1)
        labels = (target_logits.argmax(dim=-1) == draft_tokens).float()
        return draft_tokens, labels
    log_q = torch.log_softmax(process_logits(draft_logits, settings), dim=-1)
    log_p = torch.log_softmax(process_logits(target_logits, settings), dim=-1)
    draft_tokens = torch.multinomial(log_q.exp(), num_samples=1, generator=generator).squeeze(-1)
    lq = log_q.gather(-1, draft_tokens[:, None]).squeeze(-1)
    lp = log_p.gather(-1, draft_tokens[:, None]).squeeze(-1)
    log_ratio = torch.clamp(lp - lq, max=0.0)
    labels = torch.where(torch.isfinite(lp), log_ratio.exp(), torch.zeros_like(lp))
    return draft_tokens, labels


def mix_tokens(
    response_tokens: torch.Tensor,
    draft_tokens: torch.Tensor,
    ratio: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token mixing: Z_i = X_i with probability `ratio`, else Y_i. Returns (Z, is_draft) for one response.

    Only positions with `is_draft` True hold a draft token and carry a label / loss row.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mix ratio must lie in [0, 1], got {ratio}")
    if response_tokens.shape != draft_tokens.shape:
        raise ValueError("response and draft tokens must have the same shape")
    keep_response = torch.rand(response_tokens.shape, generator=generator) < ratio
    is_draft = ~keep_response.to(response_tokens.device)
    mixed = torch.where(is_draft, draft_tokens, response_tokens)
    return mixed, is_draft
