"""GammaTune-style speculation length: K per round from a moving average of the accepted counts."""

from .config import GammaTuneConfig
from .generator import GammaTuneCandidateGenerator, GammaTuneMethod, next_gamma, round_length

__all__ = ["GammaTuneCandidateGenerator", "GammaTuneConfig", "GammaTuneMethod", "next_gamma", "round_length"]
