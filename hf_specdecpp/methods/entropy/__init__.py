"""Training-free stopping on the draft's own confidence (AdaEDL-style entropy bound, top-1 probability, SVIP)."""

from .generator import (DEFAULT_GAMMA, ESTIMATORS, EntropyConfig, EntropyStoppingCandidateGenerator,
                        estimate_acceptance, svip_stop)

__all__ = ["DEFAULT_GAMMA", "ESTIMATORS", "EntropyConfig", "EntropyStoppingCandidateGenerator", "estimate_acceptance",
           "svip_stop"]
