"""Training half of hf-specdecpp: make-data -> train -> calibrate -> push.

Every step is a plain function here and a CLI command (`hf-specdecpp make-data|train|calibrate|push`). Needs the
`[train]` extra (accelerate, datasets, scikit-learn, matplotlib, tqdm), imported when a step runs: a missing one
raises MissingExtraError naming `pip install "hf-specdecpp[train]"`.

Modules, one job each: `prompts` (prompt sources), `tokens` (tokenisation, batching), `labels` (acceptance
labels, token mixing), `batch_features` (one batch's passes and cached head inputs), `data_folder` (a make-data
folder: marker, metadata, manifest), `shards` (shards written and read back checked), `data` (make-data),
`train_data`/`metrics`/`checkpoint`/`train` (train), `head_files` (writing head folders), `calibrate`,
`publish` (push).
"""

from .calibrate import calibrate_head
from .common import TrainingError
from .data import make_data
from .data_folder import read_metadata
from .labels import DecodingSettings, acceptance_labels, logits_processors, mix_tokens, process_logits
from .metrics import evaluate_predictions, rejection_auroc, weighted_bce_from_logits
from .prompts import PromptRecord, read_jsonl_prompts
from .publish import export_head, push_head
from .shards import load_features
from .train import train_head

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
