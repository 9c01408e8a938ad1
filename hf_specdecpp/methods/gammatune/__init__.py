"""GammaTune-style speculation length: K per round from a moving average of the accepted counts."""

from .generator import GammaTuneCandidateGenerator, GammaTuneConfig, next_gamma, round_length

__all__ = ["GammaTuneCandidateGenerator", "GammaTuneConfig", "next_gamma", "round_length"]
