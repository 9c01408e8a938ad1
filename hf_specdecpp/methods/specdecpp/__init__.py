"""SpecDec++ (Huang et al., 2024): adaptive candidate lengths from a trained acceptance head."""

from .config import SpecDecPPConfig
from .generator import DEFAULT_THRESHOLD, SpecDecPPCandidateGenerator, check_head_fits, check_head_type
from .stopping import RejectionThresholdCriteria

__all__ = ["DEFAULT_THRESHOLD", "RejectionThresholdCriteria", "SpecDecPPCandidateGenerator", "SpecDecPPConfig",
           "check_head_fits", "check_head_type"]
