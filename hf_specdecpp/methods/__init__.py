"""Decoding methods, one folder each, behind a small registry (`registry.py`).

- `specdecpp/`: SpecDec++, adaptive candidate lengths from a trained acceptance head;
- `fixed_k/`: a fixed number of candidates per round;
- `entropy/`: training-free stopping on the draft's confidence (AdaEDL-style, SVIP);
- `gammatune/`: training-free K per round from a moving average of accepted counts (GammaTune-style);
- `dyspec/`: DySpec dynamic draft trees verified in one target pass.

Every folder has the same shape: `config.py` (the settings: a frozen `MethodConfig` dataclass, `config_base.py`),
`generator.py` (the method class, a `DecodingMethod` of `base.py`: an immutable description that builds per-call
state), `__init__.py` exporting both, and the method's own helpers. The shared mechanics live in
`hf_specdecpp.core`; no method imports another except through `hf_specdecpp.head` (the acceptance head) and
SpecDec++'s head checks, which DySpec reuses.

Names: a method class is `<Name>Method` with its `<Name>Config`. The objects are method descriptions passed as
`candidate_generator=` or `custom_generate=`, not `transformers.CandidateGenerator`s (generate() builds the
per-call candidate generator, `core.assisted.ChainCandidateGenerator`, from them). The former names
`SpecDecPPCandidateGenerator`, `DySpecCandidateGenerator`, `EntropyStoppingCandidateGenerator`,
`FixedLengthCandidateGenerator`, `GammaTuneCandidateGenerator` and `RejectionThresholdCriteria` (now
`RejectionThresholdRule`) stay as aliases of the same classes.
"""

from . import registry
from .base import ChainMethod, DecodingMethod, SpeculativeDecoderOnlyOutput
from .config_base import CONFIG_NAME, MethodConfig
from .dyspec import DySpecCandidateGenerator, DySpecConfig, DySpecMethod
from .entropy import EntropyConfig, EntropyMethod, EntropyStoppingCandidateGenerator
from .fixed_k import FixedKConfig, FixedKMethod, FixedLengthCandidateGenerator
from .gammatune import GammaTuneCandidateGenerator, GammaTuneConfig, GammaTuneMethod
from .registry import available, load_config
from .specdecpp import (RejectionThresholdCriteria, RejectionThresholdRule, SpecDecPPCandidateGenerator,
                        SpecDecPPConfig, SpecDecPPMethod)

registry.register("specdec++", SpecDecPPMethod,
                  "SpecDec++: draft on while one more token pays for its cost by the head's (or the draft's top-1, "
                  "whichever predicts the head's dev traces better) online-calibrated estimate; with threshold=h, "
                  "stop when the head's predicted P(any rejection) exceeds h")
registry.register("fixed-k", FixedKMethod, "a fixed number K of candidates per round")
registry.register("entropy", EntropyMethod,
                  "stop when the draft's entropy bound (AdaEDL) or top-1 probability falls below lambda, or "
                  "when sqrt(gamma * entropy) exceeds h (SVIP, estimator='svip', lam=h); stop_rule='cost-aware': "
                  "draft on while one more token pays for its cost")
registry.register("gammatune", GammaTuneMethod,
                  "K per round from a moving average of accepted counts (GammaTune-style)")
registry.register("dyspec", DySpecMethod, "DySpec dynamic draft trees verified in one target pass")

ALIASES = {
    "SpecDecPPCandidateGenerator": "SpecDecPPMethod",
    "DySpecCandidateGenerator": "DySpecMethod",
    "EntropyStoppingCandidateGenerator": "EntropyMethod",
    "FixedLengthCandidateGenerator": "FixedKMethod",
    "GammaTuneCandidateGenerator": "GammaTuneMethod",
    "RejectionThresholdCriteria": "RejectionThresholdRule",
}
"""Former public names -> the primary name of the same class."""

__all__ = [
    "ALIASES",
    "CONFIG_NAME",
    "ChainMethod",
    "DecodingMethod",
    "DySpecCandidateGenerator",
    "DySpecConfig",
    "DySpecMethod",
    "EntropyConfig",
    "EntropyMethod",
    "EntropyStoppingCandidateGenerator",
    "FixedKConfig",
    "FixedKMethod",
    "FixedLengthCandidateGenerator",
    "GammaTuneCandidateGenerator",
    "GammaTuneConfig",
    "GammaTuneMethod",
    "MethodConfig",
    "RejectionThresholdCriteria",
    "RejectionThresholdRule",
    "SpecDecPPCandidateGenerator",
    "SpecDecPPConfig",
    "SpecDecPPMethod",
    "SpeculativeDecoderOnlyOutput",
    "available",
    "load_config",
    "registry",
]
