"""What the benchmark runs: named configurations.

A configuration is one of
- `TARGET_ALONE` ("target"): `target.generate()` without a draft (the reference; added when missing);
- `ASSISTED` ("assisted"): transformers' default assisted generation, `assistant_model=draft` only (with
  scikit-learn installed transformers tunes its confidence threshold from an ROC curve during each call);
- `HEURISTIC` ("heuristic"): transformers' `num_assistant_tokens_schedule="heuristic"` starting from
  `HEURISTIC_START` candidates (+2 after a fully accepted round, -1 otherwise; confidence stopping stays on);
- a decoding method of `hf_specdecpp.methods.registry` (SpecDec++, fixed K, entropy stopping and SVIP,
  GammaTune, DySpec), built
  by name with `registry.build(name, **kwargs)` and passed as `candidate_generator=`.
"""

from __future__ import annotations

from dataclasses import fields

from ..methods import registry
from ..methods import DecodingMethod

TARGET_ALONE = "target"
ASSISTED = "assisted"
HEURISTIC = "heuristic"
STOCK = (TARGET_ALONE, ASSISTED, HEURISTIC)
ORACLE = "oracle"
HEURISTIC_START = 20
SPECDEC_AUTO = "specdec++-auto"


def specdec_config_name(threshold: float) -> str:
    """The name `build_configs` gives SpecDec++ at `threshold` (with the head's calibrated cap)."""
    return f"specdec++-h{threshold:g}"


def build_configs(fixed_k, thresholds, entropy_lams, head=None, max_candidates: int | None = None,
                  tree_budgets=(), specdec_caps=(), svip_hs=(), gammatune: bool = False) -> dict:
    """The standard configuration set: target alone, transformers default and heuristic, fixed K, entropy
    stopping (AdaEDL-style), the training-free peers SVIP at each h of `svip_hs` and GammaTune (when
    `gammatune`; both capped like entropy stopping), SpecDec++ with its policy re-calibrated here
    (`specdec++-auto`, heads with traces), SpecDec++ at each threshold (when a head is given; `max_candidates`
    None = the head's calibrated cap), SpecDec++ at the head's own threshold with each cap of `specdec_caps`, and
    DySpec trees at each budget (draft-guided, and head-guided with a head). Methods come from the registry."""
    from ..head import DEFAULT_MAX_CANDIDATES

    configs: dict = {"target": TARGET_ALONE, "hf-default": ASSISTED, "hf-heuristic": HEURISTIC}
    for k in fixed_k:
        configs[f"fixed-K{k}"] = registry.build("fixed-k", num_candidates=k)
    for lam in entropy_lams:
        configs[f"entropy-{lam:g}"] = registry.build("entropy", lam=lam,
                                                      max_candidates=max_candidates or DEFAULT_MAX_CANDIDATES)
    configs.update(peer_configs(svip_hs, gammatune, max_candidates or DEFAULT_MAX_CANDIDATES))
    if head is not None:
        if head.traces:  # as a user gets it: the shipped policy re-calibrated for this device at first use
            configs[SPECDEC_AUTO] = registry.build("specdec++", head=head, recalibrate="auto")
        for h in thresholds:
            configs[specdec_config_name(h)] = registry.build("specdec++", head=head, threshold=h,
                                                             max_candidates=max_candidates)
        for cap in specdec_caps:
            h = head.policy.threshold if head.policy is not None else thresholds[0]
            configs[f"{specdec_config_name(h)}-cap{cap}"] = registry.build("specdec++", head=head, threshold=h,
                                                                           max_candidates=cap)
    for budget in tree_budgets:
        configs[f"dyspec-B{budget}"] = registry.build("dyspec", budget=budget)
        if head is not None:
            configs[f"dyspec+head-B{budget}"] = registry.build("dyspec", budget=budget, head=head)
    return configs


class ConfigSelectionError(ValueError):
    """`--only` named a configuration the other options do not build."""


def select_configs(configs: dict, names: list[str]) -> dict:
    """Only the configurations named in `names` (the target alone is always kept: speed-ups are relative to it);
    a `ConfigSelectionError` names any unknown name and lists the known ones."""
    unknown = [n for n in names if n not in configs]
    if unknown:
        raise ConfigSelectionError(f"--only names no configuration {', '.join(map(repr, unknown))}; the options "
                                   f"given build {', '.join(configs)}")
    return {n: c for n, c in configs.items() if n in names or c == TARGET_ALONE}


def peer_configs(svip_hs, gammatune: bool, max_candidates: int) -> dict:
    """SVIP (`entropy` with estimator="svip", lam = h) at each h, and GammaTune with its defaults."""
    configs = {f"svip-h{h:g}": registry.build("entropy", lam=h, estimator="svip", max_candidates=max_candidates)
               for h in svip_hs}
    if gammatune:
        configs["gammatune"] = registry.build("gammatune", max_candidates=max_candidates)
    return configs


def validate_configs(configs: dict) -> dict:
    """`configs` checked (stock names or decoding methods; "oracle" is reserved), target alone first if missing."""
    out = {}
    for name, config in configs.items():
        if ORACLE == name:
            raise ValueError(f"the configuration name {ORACLE!r} is reserved for the oracle bound")
        if isinstance(config, DecodingMethod) or config in STOCK:
            out[name] = config
        else:
            raise ValueError(
                f"configuration {name!r}: expected one of {STOCK} or an hf_specdecpp candidate generator, "
                f"got {config!r}"
            )
    if TARGET_ALONE not in out.values():
        out = {TARGET_ALONE: TARGET_ALONE, **out}
    return out


def method_name(config) -> str | None:
    """The registry name of a decoding method ("specdec++", "fixed-k", ...), None for the stock configurations."""
    entry = registry.entry_for(config)
    return entry.name if entry is not None else None


def first_of(configs: dict, method: str) -> str | None:
    """The name of the first configuration that is the registered `method`."""
    return next((n for n, c in configs.items() if method_name(c) == method), None)


def names_of(configs: dict, method: str) -> list[str]:
    """The names of every configuration that is the registered `method`."""
    return [n for n, c in configs.items() if method_name(c) == method]


def describe_config(config) -> str:
    """One line naming a configuration and every parameter of its method (saved with results, checked on resume)."""
    if isinstance(config, str):
        return {TARGET_ALONE: "target alone", ASSISTED: "transformers assisted generation (default)",
                HEURISTIC: f"transformers heuristic schedule (start {HEURISTIC_START})"}[config]
    params = {f.name: getattr(config.config, f.name) for f in fields(config.config)}
    return f"{type(config).__name__}({', '.join(f'{k}={v}' for k, v in params.items())})"
