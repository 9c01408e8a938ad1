"""Fixed candidate length K: the classic speculative decoding baseline."""

from .generator import FixedKConfig, FixedLengthCandidateGenerator

__all__ = ["FixedKConfig", "FixedLengthCandidateGenerator"]
