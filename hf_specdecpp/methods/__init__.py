"""Decoding methods, one folder each, behind a small registry (`registry.py`).

- `specdecpp/`: SpecDec++, adaptive candidate lengths from a trained acceptance head;
- `fixed_k/`: a fixed number of candidates per round;
- `entropy/`: training-free stopping on the draft's confidence (AdaEDL-style, SVIP);
- `gammatune/`: training-free K per round from a moving average of accepted counts (GammaTune-style);
- `dyspec/`: DySpec dynamic draft trees verified in one target pass.

Every method builds on `base.py` (immutable description, per-call state) and the shared mechanics in
`hf_specdecpp.core`; no method imports another except through `hf_specdecpp.head` (the acceptance head).
"""

from . import registry
from .base import ChainMethod, DecodingMethod, SpeculativeDecoderOnlyOutput
from .dyspec import DySpecCandidateGenerator, DySpecConfig
from .entropy import EntropyConfig, EntropyStoppingCandidateGenerator
from .fixed_k import FixedKConfig, FixedLengthCandidateGenerator
from .gammatune import GammaTuneCandidateGenerator, GammaTuneConfig
from .specdecpp import RejectionThresholdCriteria, SpecDecPPCandidateGenerator, SpecDecPPConfig

registry.register("specdec++", SpecDecPPCandidateGenerator, SpecDecPPConfig,
                  "SpecDec++: stop when the acceptance head's predicted P(any rejection) exceeds h")
registry.register("fixed-k", FixedLengthCandidateGenerator, FixedKConfig, "a fixed number K of candidates per round")
registry.register("entropy", EntropyStoppingCandidateGenerator, EntropyConfig,
                  "stop when the draft's entropy bound (AdaEDL) or top-1 probability falls below lambda, or "
                  "when sqrt(gamma * entropy) exceeds h (SVIP, estimator='svip', lam=h)")
registry.register("gammatune", GammaTuneCandidateGenerator, GammaTuneConfig,
                  "K per round from a moving average of accepted counts (GammaTune-style)")
registry.register("dyspec", DySpecCandidateGenerator, DySpecConfig, "DySpec dynamic draft trees")

__all__ = [
    "ChainMethod",
    "DecodingMethod",
    "DySpecCandidateGenerator",
    "DySpecConfig",
    "EntropyConfig",
    "EntropyStoppingCandidateGenerator",
    "FixedKConfig",
    "FixedLengthCandidateGenerator",
    "GammaTuneCandidateGenerator",
    "GammaTuneConfig",
    "RejectionThresholdCriteria",
    "SpecDecPPCandidateGenerator",
    "SpecDecPPConfig",
    "SpeculativeDecoderOnlyOutput",
    "registry",
]
