"""The acceptance head: a small network over the draft's last hidden state."""

from .acceptance_head import (
    CONFIDENCE_FEATURES,
    DEFAULT_MAX_CANDIDATES,
    DRAFTED_TOKEN,
    INPUT_STATES,
    PRODUCING_STATE,
    AcceptanceHead,
    confidence_features,
    convert_reference_state_dict,
)

__all__ = [
    "CONFIDENCE_FEATURES",
    "DEFAULT_MAX_CANDIDATES",
    "DRAFTED_TOKEN",
    "INPUT_STATES",
    "PRODUCING_STATE",
    "AcceptanceHead",
    "confidence_features",
    "convert_reference_state_dict",
]
