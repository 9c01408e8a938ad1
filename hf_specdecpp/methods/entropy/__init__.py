"""Training-free stopping on the draft's own confidence (AdaEDL-style entropy bound, or top-1 probability)."""

from .generator import ESTIMATORS, EntropyConfig, EntropyStoppingCandidateGenerator, estimate_acceptance

__all__ = ["ESTIMATORS", "EntropyConfig", "EntropyStoppingCandidateGenerator", "estimate_acceptance"]
