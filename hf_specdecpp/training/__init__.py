"""Training half of hf-specdecpp: make-data -> train -> calibrate -> push.

Every step is a plain function here and a CLI command (`hf-specdecpp make-data|train|calibrate|push`). Needs the
`[train]` extra (accelerate, datasets, scikit-learn, matplotlib).
"""

from .calibrate import calibrate_head
from .common import TrainingError
from .data import PromptRecord, load_features, make_data, read_jsonl_prompts, read_metadata
from .labels import DecodingSettings, acceptance_labels, logits_processors, mix_tokens, process_logits
from .publish import export_head, push_head
from .train import evaluate_predictions, rejection_auroc, train_head, weighted_bce_from_logits

__all__ = [
    "DecodingSettings",
    "PromptRecord",
    "TrainingError",
    "acceptance_labels",
    "calibrate_head",
    "evaluate_predictions",
    "export_head",
    "load_features",
    "logits_processors",
    "make_data",
    "mix_tokens",
    "process_logits",
    "push_head",
    "read_jsonl_prompts",
    "read_metadata",
    "rejection_auroc",
    "train_head",
    "weighted_bce_from_logits",
]
