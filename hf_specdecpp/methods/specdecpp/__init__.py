"""SpecDec++ (Huang et al., 2024): adaptive candidate lengths from a trained acceptance head."""

from .config import SpecDecPPConfig
from .generator import (DEFAULT_THRESHOLD, SpecDecPPCandidateGenerator, SpecDecPPMethod, check_head_fits,
                        check_head_type)
from .stopping import RejectionThresholdCriteria, RejectionThresholdRule

__all__ = ["DEFAULT_THRESHOLD", "RejectionThresholdCriteria", "RejectionThresholdRule", "SpecDecPPCandidateGenerator",
           "SpecDecPPConfig", "SpecDecPPMethod", "check_head_fits", "check_head_type"]
