"""Training-free stopping on the draft's own confidence (AdaEDL-style entropy bound, top-1 probability, SVIP)."""

from .config import EntropyConfig
from .estimators import DEFAULT_GAMMA, ESTIMATORS, estimate_acceptance, svip_stop
from .generator import EntropyMethod, EntropyStoppingCandidateGenerator

__all__ = ["DEFAULT_GAMMA", "ESTIMATORS", "EntropyConfig", "EntropyMethod", "EntropyStoppingCandidateGenerator",
           "estimate_acceptance", "svip_stop"]
