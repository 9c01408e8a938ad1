"""Which replay policy stands for which benchmark configuration (None: not replayable, count real calls)."""

from __future__ import annotations

from ...head import head_on
from ..configs import ASSISTED, HEURISTIC, HEURISTIC_START, method_name
from .policies import DEFAULT_ASSISTANT_TOKENS, DEFAULT_CONFIDENCE, Confidence, CostAware, FixedK, GammaTune, \
    Policy, SpecDecPP, TransformersAssisted


def assistant_settings(draft) -> tuple[float, int, str]:
    """(confidence threshold, num_assistant_tokens, schedule) transformers starts a call with: the draft's
    generation config, with transformers' defaults for what it leaves unset."""
    config = draft.generation_config
    threshold = config.assistant_confidence_threshold
    tokens = config.num_assistant_tokens
    schedule = config.num_assistant_tokens_schedule
    return (DEFAULT_CONFIDENCE if threshold is None else float(threshold),
            DEFAULT_ASSISTANT_TOKENS if tokens is None else int(tokens), schedule or "constant")


def _sklearn() -> bool:
    from transformers.utils import is_sklearn_available

    return bool(is_sklearn_available())


def _training_free_cost_aware(c) -> CostAware:
    """The replay of `EntropyMethod(estimator="top1", stop_rule="cost-aware")` with the config's costs."""
    cost_ratio, verify = c.costs()
    return CostAware(None, cost_ratio, tuple(verify), c.max_candidates, c.min_candidates, c.cost_aware_settings())


def policy_for(config, target, draft) -> Policy | None:
    """The replay policy of `config` for this pair (None for target alone, trees, and anything unknown)."""
    if config in (ASSISTED, HEURISTIC):
        threshold, tokens, schedule = assistant_settings(draft)
        if config == HEURISTIC:
            tokens, schedule = HEURISTIC_START, "heuristic"
        return TransformersAssisted(threshold, tokens, schedule, _sklearn())
    name = method_name(config)
    if name == "fixed-k":
        return FixedK(config.config.num_candidates)
    if name == "entropy":
        c = config.config
        if c.stop_rule == "cost-aware":  # replayable with the top-1 estimate only (the others: counted calls)
            return _training_free_cost_aware(c) if c.estimator == "top1" else None
        return Confidence(c.lam, c.gamma, c.estimator, c.min_candidates, c.max_candidates)
    if name == "gammatune":
        c = config.config
        return GammaTune(c.initial, c.smoothing, c.min_candidates, c.max_candidates)
    if name == "specdec++":
        resolved = config.resolve_policy(draft, target, do_sample=False)
        head = head_on(config.head, next(draft.parameters()).device)
        if config.config.stop_rule == "cost-aware":
            return CostAware(head if resolved.estimate.name == "head" else None, resolved.cost_ratio,
                             tuple(resolved.verify_costs), resolved.max_candidates, config.config.min_candidates,
                             resolved.cost_aware_settings())
        return SpecDecPP(head, resolved.threshold, config.config.min_candidates, resolved.max_candidates)
    return None
