"""SpecDec++ and SVIP inside vLLM: proposers for its `custom_class` speculative-decoding hook.

vLLM (0.32) builds the class named in `speculative_config.model` as `Class(vllm_config)`, calls
`load_model(target_model)` once and then, every engine step, `propose(sampled_token_ids, num_tokens_no_spec,
token_ids_cpu, slot_mappings=None)`, which returns one draft (a list of 0..K token ids) per running request.
Only token ids come in, so the proposer runs its own draft (a transformers model) and decides each request's
draft length itself: SpecDec++ stops a row once its acceptance head predicts P(at least one rejection) > h,
SVIP once the draft's entropy says so. All running requests are drafted together (`RequestDrafter`: one
batched forward per drafted position, one draft cache kept across steps and cut back to what vLLM accepted).

    vllm serve Qwen/Qwen2.5-Coder-1.5B-Instruct --speculative-config \\
        '{"method": "custom_class", "model": "hf_specdecpp.integration.vllm_proposer.SpecDecPPProposer",
          "num_speculative_tokens": 8}'

vLLM's speculative config forbids fields of its own, so the draft and the head come from the environment
variable `HF_SPECDECPP_VLLM`, a JSON object (worker processes inherit it):

- `draft`: the draft's Hub id or folder (default: the draft the head was trained with, `head.draft_model_id`);
- `head`: a shipped head's name, a folder or a Hub id (default: the shipped greedy head);
- `threshold`: SpecDec++'s h; unset, the head's policy is used and re-calibrated online (`recalibrate`);
- `recalibrate`: "online" (default) re-chooses h and the cap from this engine's own step times after
  `calibration_steps` steps (the head's dev traces re-simulated, seconds, once); "never" keeps the head's policy;
- `lam`, `gamma`: SVIP's h and entropy scale (`SVIPProposer`); `min_candidates`; `dtype` of the draft (default:
  vLLM's model dtype); `trace`: a file to append one JSON line per step to (the draft lengths, requests held).

K (`num_speculative_tokens`) is the most tokens a draft may hold; SpecDec++'s calibrated cap may lower it.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ..core.costs import CostCurve
from ..core.drafting import StopRule
from ..core.pair import VocabMap, output_vocab_size
from ..head import AcceptanceHead, head_on
from ..methods.entropy.generator import ConfidenceStop, EntropyConfig
from ..methods.specdecpp import DEFAULT_THRESHOLD, RejectionThresholdRule, check_head_fits
from .request_drafter import RequestDrafter

ENV_VAR = "HF_SPECDECPP_VLLM"
SVIP_H = 0.3
"""`SVIPProposer`'s h when `lam` is not set: the SVIP authors' value."""
logger = logging.getLogger(f"vllm.{__name__}")  # under vLLM's logger: printed with its own messages


@dataclass(frozen=True)
class ProposerSettings:
    """What `HF_SPECDECPP_VLLM` may set (see the module docstring)."""

    draft: str | None = None
    head: str | None = None
    threshold: float | None = None
    recalibrate: str = "online"
    calibration_steps: int = 24
    lam: float = SVIP_H
    gamma: float | None = None
    min_candidates: int = 1
    dtype: str | None = None
    trace: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "ProposerSettings":
        """Read `HF_SPECDECPP_VLLM` (a JSON object; unset: defaults). Unknown keys are refused by name."""
        raw = (environ if environ is not None else os.environ).get(ENV_VAR, "").strip()
        values = json.loads(raw) if raw else {}
        if not isinstance(values, dict):
            raise ValueError(f"{ENV_VAR} must hold a JSON object, got {raw!r}")
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{ENV_VAR}: unknown keys {unknown}; known: {sorted(f.name for f in fields(cls))}")
        if values.get("recalibrate", "online") not in ("online", "never"):
            raise ValueError(f"{ENV_VAR}: recalibrate must be 'online' or 'never', got {values['recalibrate']!r}")
        return cls(**values)


@dataclass
class StepTimes:
    """The engine's own costs, timed between `propose` calls: the verification step that follows a draft of K
    tokens (vLLM's forward, sampling and scheduling; K = the longest draft of the step) and the draft's time per
    batched forward. Steps in which requests arrived or left are not counted: the gap before them holds the
    target's prefills (or an idle engine), the draft time the arrivals' prefill."""

    verify: dict[int, list[float]] = field(default_factory=dict)
    draft: list[float] = field(default_factory=list)
    last_end: float | None = None
    last_k: int = 0

    def begin(self) -> float:
        return time.perf_counter()

    def end(self, started: float, longest: int, forwards: int, changed: bool) -> None:
        """Record a step that began at `started`, drafted at most `longest` tokens in `forwards` passes."""
        now = time.perf_counter()
        if not changed and self.last_end is not None:
            self.verify.setdefault(self.last_k, []).append(started - self.last_end)
            if forwards:
                self.draft.append((now - started) / forwards)
        self.last_end, self.last_k = now, longest

    def curve(self, max_k: int, min_samples: int = 3) -> CostCurve | None:
        """A linear fit of step time over K (None until two K have `min_samples` steps each)."""
        points = {k: statistics.median(v) for k, v in self.verify.items() if len(v) >= min_samples}
        if len(points) < 2 or not self.draft:
            return None
        slope, intercept = np.polyfit(np.array(list(points), float), np.array(list(points.values())), 1)
        step = float(intercept) if intercept > 0 else min(points.values())
        verify = {k: step + max(float(slope), 0.0) * k for k in range(max_k + 1)}
        return CostCurve(statistics.median(self.draft), step, verify)


class _HookProposer:
    """What both proposers share: the settings, the draft, the per-step bookkeeping of vLLM's hook."""

    def __init__(self, vllm_config: Any):
        self.settings = ProposerSettings.from_env()
        spec = vllm_config.speculative_config
        self.max_k = int(spec.num_speculative_tokens)
        self.cap = self.max_k
        model_config = vllm_config.model_config
        self.max_model_len = int(model_config.max_model_len)
        self.target_vocab = int(model_config.get_vocab_size())
        self.dtype = getattr(torch, self.settings.dtype) if self.settings.dtype else model_config.dtype
        self.drafter: RequestDrafter | None = None
        self.times = StepTimes()

    def default_draft(self) -> str | None:
        return None

    def build_rule(self, draft: torch.nn.Module) -> StopRule:
        raise NotImplementedError

    def load_model(self, target_model: Any = None) -> None:
        """Load the draft (vLLM's CPU and GPU runners call this once, with the target, which is not used)."""
        from transformers import AutoModelForCausalLM

        source = self.settings.draft or self.default_draft()
        if not source:
            raise ValueError(f"No draft model: set {ENV_VAR}='{{\"draft\": \"<Hub id or folder>\"}}'.")
        draft = AutoModelForCausalLM.from_pretrained(source, dtype=self.dtype).eval()
        eos = draft.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        vocab = VocabMap(self.target_vocab, output_vocab_size(draft))
        self.drafter = RequestDrafter(draft, self.build_rule(draft), vocab, eos, self.settings.min_candidates)
        logger.info("hf_specdecpp %s: draft %s, K <= %d", type(self).__name__, source, self.max_k)

    @torch.no_grad()
    def propose(self, sampled_token_ids: list[list[int]], num_tokens_no_spec: np.ndarray, token_ids_cpu: np.ndarray,
                slot_mappings: Any = None) -> list[list[int]]:
        """One draft per request of the step (row i of the arrays is request i).

        Args:
            sampled_token_ids: the tokens each request gained this step (empty: no draft, e.g. mid-prefill).
            num_tokens_no_spec: each row's context length; `token_ids_cpu[i, :num_tokens_no_spec[i]]`.
            token_ids_cpu: the rows' token ids.
            slot_mappings: the target's cache slots (not used: the draft keeps its own cache).

        Returns:
            A list of 0..K drafted ids per request.
        """
        if self.drafter is None:
            self.load_model()
        started = self.times.begin()
        contexts, caps = [], []
        for i, sampled in enumerate(sampled_token_ids):
            length = int(num_tokens_no_spec[i])
            contexts.append(token_ids_cpu[i, :length] if sampled else None)
            caps.append(max(min(self.cap, self.max_model_len - length - 1), 0))
        forwards = self.drafter.forwards
        drafts = self.drafter.propose(contexts, caps)
        self.times.end(started, max(map(len, drafts), default=0), self.drafter.forwards - forwards,
                       self.drafter.changed)
        self.after_step()
        if self.settings.trace:
            self.write_trace(drafts, contexts, time.perf_counter() - started)
        return drafts

    def after_step(self) -> None:
        """Called after every step (SpecDec++ re-calibrates here)."""

    def write_trace(self, drafts: list[list[int]], contexts: list, seconds: float) -> None:
        """One JSON line per step: each row's draft length (None: no draft asked), requests held, cap, seconds."""
        step = {"lengths": [len(d) if c is not None else None for d, c in zip(drafts, contexts)],
                "held": self.drafter.num_requests, "cap": self.cap, "seconds": seconds,
                "threshold": getattr(self, "threshold", None)}
        with open(self.settings.trace, "a") as trace:
            trace.write(json.dumps(step) + "\n")


class SVIPProposer(_HookProposer):
    """The training-free SVIP rule (stop once sqrt(gamma * H) of the draft's distribution exceeds `lam`)."""

    def build_rule(self, draft: torch.nn.Module) -> StopRule:
        return ConfidenceStop(EntropyConfig(lam=self.settings.lam, gamma=self.settings.gamma, estimator="svip",
                                            max_candidates=self.max_k))


class SpecDecPPProposer(_HookProposer):
    """SpecDec++ with an acceptance head: the shipped one by default, its policy re-calibrated online."""

    def __init__(self, vllm_config: Any):
        super().__init__(vllm_config)
        self.head = load_head(self.settings.head)
        policy = self.head.policy
        self.threshold = self.settings.threshold or (policy.threshold if policy else DEFAULT_THRESHOLD)
        self.calibrating = self.settings.recalibrate == "online" and self.settings.threshold is None \
            and bool(self.head.traces)
        self.policy = None

    def default_draft(self) -> str | None:
        return self.head.draft_model_id

    def build_rule(self, draft: torch.nn.Module) -> StopRule:
        check_head_fits(self.head, draft)
        self.device_head = head_on(self.head, next(draft.parameters()).device)
        return RejectionThresholdRule(self.device_head, self.threshold)

    def after_step(self) -> None:
        if not self.calibrating or sum(map(len, self.times.verify.values())) < self.settings.calibration_steps:
            return
        curve = self.times.curve(self.max_k)
        if curve is None:
            return
        from ..methods.specdecpp.calibration import policy_from_costs

        self.calibrating = False
        self.policy = policy_from_costs(self.head, curve, max_candidates=self.max_k)
        self.threshold, self.cap = self.policy.threshold, int(self.policy.max_candidates or self.max_k)
        self.drafter.rule = RejectionThresholdRule(self.device_head, self.threshold)
        logger.info("hf_specdecpp: policy re-calibrated on this engine: h=%.2f, cap %d (c=%.3f, v(K)=%.3f+%.3fK)",
                    self.threshold, self.cap, curve.c_draft, 1.0, curve.verify_slope)


def load_head(source: str | None) -> AcceptanceHead:
    """A shipped head by name (default: the greedy one), else a folder or Hub id."""
    from ..head.shipped import load_shipped_head, shipped_heads

    if source is None or source in shipped_heads():
        return load_shipped_head(*([source] if source else []))
    return AcceptanceHead.from_pretrained(source).float().eval()
