"""Fixed candidate length K: the classic speculative decoding baseline."""

from .config import FixedKConfig
from .generator import FixedKMethod, FixedLengthCandidateGenerator

__all__ = ["FixedKConfig", "FixedKMethod", "FixedLengthCandidateGenerator"]
