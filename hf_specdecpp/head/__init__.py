"""The acceptance head: a small network over the draft's hidden state, its calibrated policy, and shipped heads."""

from .checkpoint import convert_reference_state_dict
from .features import (CONFIDENCE_FEATURES, DRAFTED_TOKEN, INPUT_STATES, PRODUCING_STATE, confidence_features,
                       top1_probability)
from .modeling import AcceptanceHead, check_owned_folder, head_on
from ..core.device import DeviceKind
from .policy import HeadPolicy

DEFAULT_MAX_CANDIDATES = 20
"""Candidates per round allowed when a head carries no calibrated cap (or its cap was set for another device)."""

__all__ = [
    "CONFIDENCE_FEATURES",
    "DEFAULT_MAX_CANDIDATES",
    "DRAFTED_TOKEN",
    "INPUT_STATES",
    "PRODUCING_STATE",
    "AcceptanceHead",
    "DeviceKind",
    "HeadPolicy",
    "check_owned_folder",
    "confidence_features",
    "convert_reference_state_dict",
    "head_on",
    "top1_probability",
]
