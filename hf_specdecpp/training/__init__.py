"""Training half of hf-specdecpp: make-data -> train -> calibrate -> push (GitHub issue #3).

Every step is a plain function here and a CLI command (`hf-specdecpp make-data|train|calibrate|push`).
"""

from .calibrate import (
    acceptance_outcomes,
    calibrate_head,
    choose_threshold,
    measure_costs,
    simulate_policy,
    threshold_round_length,
)
from .common import TrainingError
from .data import PromptRecord, load_features, make_data, read_jsonl_prompts, read_metadata
from .labels import DecodingSettings, acceptance_labels, logits_processors, mix_tokens, process_logits
from .publish import export_head, model_card_extra, push_head
from .train import evaluate_predictions, rejection_auroc, train_head, weighted_bce_from_logits

__all__ = [
    "DecodingSettings",
    "PromptRecord",
    "TrainingError",
    "acceptance_labels",
    "acceptance_outcomes",
    "calibrate_head",
    "choose_threshold",
    "evaluate_predictions",
    "export_head",
    "load_features",
    "logits_processors",
    "make_data",
    "measure_costs",
    "mix_tokens",
    "model_card_extra",
    "process_logits",
    "push_head",
    "read_jsonl_prompts",
    "read_metadata",
    "rejection_auroc",
    "simulate_policy",
    "threshold_round_length",
    "train_head",
    "weighted_bce_from_logits",
]
