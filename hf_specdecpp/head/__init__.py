"""The acceptance head: a small network over the draft's last hidden state."""

from .acceptance_head import AcceptanceHead, convert_reference_state_dict

__all__ = ["AcceptanceHead", "convert_reference_state_dict"]
