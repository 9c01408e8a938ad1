"""The inference path: candidate generators, the stopping rule, and their plumbing into generate()."""

from .candidate_generator import DraftLoopCandidateGenerator, SpecDecPPCandidateGenerator
from .stats import SpeculationStats
from .stopping import RejectionThresholdCriteria

__all__ = [
    "DraftLoopCandidateGenerator",
    "RejectionThresholdCriteria",
    "SpecDecPPCandidateGenerator",
    "SpeculationStats",
]
