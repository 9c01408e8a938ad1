"""The inference path: candidate generators, the stopping rule, and their plumbing into generate()."""

from .baselines import EntropyStoppingCandidateGenerator, FixedLengthCandidateGenerator
from .candidate_generator import DraftLoopCandidateGenerator, SpecDecPPCandidateGenerator
from .stats import SpeculationStats
from .stopping import RejectionThresholdCriteria
from .tree import DySpecCandidateGenerator

__all__ = [
    "DraftLoopCandidateGenerator",
    "DySpecCandidateGenerator",
    "EntropyStoppingCandidateGenerator",
    "FixedLengthCandidateGenerator",
    "RejectionThresholdCriteria",
    "SpecDecPPCandidateGenerator",
    "SpeculationStats",
]
