"""hf-specdecpp: SpecDec++ adaptive candidate lengths for speculative decoding in transformers' generate().

Importing the package adds a `candidate_generator=` argument to `generate()` (see
`hf_specdecpp.inference.generate_patch`); the patch-free route is `generate(custom_generate=generator)`.
`DySpecCandidateGenerator` drafts token trees instead of chains; both routes run its own tree decoding loop.
"""

from .compat import SUPPORTED_RANGE, check_transformers_version

check_transformers_version()

from .head import AcceptanceHead  # noqa: E402
from .inference import (  # noqa: E402
    DraftLoopCandidateGenerator,
    DySpecCandidateGenerator,
    EntropyStoppingCandidateGenerator,
    FixedLengthCandidateGenerator,
    RejectionThresholdCriteria,
    SpecDecPPCandidateGenerator,
    SpeculationStats,
)
from .inference.generate_patch import install as _install_generate_patch  # noqa: E402

_install_generate_patch()

__version__ = "0.1.0"

__all__ = [
    "SUPPORTED_RANGE",
    "AcceptanceHead",
    "DraftLoopCandidateGenerator",
    "DySpecCandidateGenerator",
    "EntropyStoppingCandidateGenerator",
    "FixedLengthCandidateGenerator",
    "RejectionThresholdCriteria",
    "SpecDecPPCandidateGenerator",
    "SpeculationStats",
    "__version__",
]
