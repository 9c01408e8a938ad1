"""The acceptance head: a small network over the draft's last hidden state."""

from .acceptance_head import DEFAULT_MAX_CANDIDATES, AcceptanceHead, convert_reference_state_dict

__all__ = ["DEFAULT_MAX_CANDIDATES", "AcceptanceHead", "convert_reference_state_dict"]
