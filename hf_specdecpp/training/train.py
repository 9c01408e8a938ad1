"""train: fit the acceptance head on cached draft hidden states (the draft is never run here).

Loss: soft-label weighted BCE `-(w_acc*P*log P̂ + w_rej*(1-P)*log(1-P̂))` normalised by the total weight
`sum(w_acc*P + w_rej*(1-P))`, computed from logits with logsigmoid. AdamW + cosine schedule with warmup.
`accelerate` runs the same code on CPU, one GPU or several (`accelerate launch -m hf_specdecpp.cli train ...`):
each process takes every n-th batch of responses. After every epoch the dev split is scored (weighted BCE,
plain BCE, binary KL to the soft labels, AUROC of predicting rejection, ECE); the best head by dev weighted BCE
is written with `save_pretrained` to `output_dir` once the last epoch is done (an interrupted run leaves no head
that looks finished), and the full training state after every epoch to `output_dir/checkpoint` (atomically, in
safetensors and JSON, see `training.checkpoint`) so an interrupted run resumes at the next epoch (`resume=True`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.validation import check_choice, check_int, check_number
from ..head import DRAFTED_TOKEN, INPUT_STATES, PRODUCING_STATE, AcceptanceHead
from ..utils.io import diff_settings
from .checkpoint import Checkpoint, has_checkpoint, load_checkpoint, save_checkpoint
from .common import TrainingError, checked, progress, require_train_extras, step, train_extra, warn_small_dev_split
from .data_folder import comparable
from .head_files import check_head_folder, save_head, trained_head_info
from .metrics import evaluate_predictions, rejection_auroc, weighted_bce_from_logits
from .train_data import TrainingData, batch_arrays, data_identity, epoch_batches, load_training_data, predict_logits

__all__ = ["TrainArgs", "evaluate_predictions", "rejection_auroc", "train_head", "weighted_bce_from_logits"]


@dataclass(frozen=True)
class TrainArgs:
    """The head's architecture and the optimisation settings (recorded in the checkpoint and the head).

    Args:
        num_layers (`int`, *optional*, defaults to 3): the head's residual blocks before its classifier (>= 0).
        epochs (`int`, *optional*, defaults to 3): passes over the training split.
        batch_size (`int`, *optional*, defaults to 16): responses per optimizer step (all their label rows).
        lr (`float`, *optional*, defaults to 1e-3): AdamW's learning rate of the hidden-state path.
        weight_decay (`float`, *optional*, defaults to 0.01): AdamW's weight decay.
        warmup_ratio (`float`, *optional*, defaults to 0.03): the share of the steps that warm up the cosine schedule.
        w_reject (`float`, *optional*, defaults to 6.0): the loss weight of rejection (`weighted_bce_from_logits`).
        w_accept (`float`, *optional*, defaults to 1.0): the loss weight of acceptance.
        max_grad_norm (`float`, *optional*, defaults to 1.0): the gradient-norm clip (0: none).
        seed (`int`, *optional*, defaults to 0): the seed of the initialisation and of the batch order.
        input_state (`str`, *optional*, defaults to `"drafted_token"`): the head type (see `AcceptanceHead`).
        use_confidence_features (`bool`, *optional*, defaults to `False`): also feed the draft's confidence
            features (`"producing_state"` heads only).
        feature_lr (`float`, *optional*, defaults to 1e-2): the learning rate of the confidence-feature weights.

    Raises:
        TrainingError: from `check()`, a setting outside its range (naming the argument).
    """

    num_layers: int = 3
    epochs: int = 3
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.03
    w_reject: float = 6.0
    w_accept: float = 1.0
    max_grad_norm: float = 1.0
    seed: int = 0
    input_state: str = DRAFTED_TOKEN
    use_confidence_features: bool = False
    feature_lr: float = 1e-2

    def check(self) -> "TrainArgs":
        """Each setting in its range (a TrainingError names the argument)."""
        checked(lambda: check_int("num_layers", self.num_layers, minimum=0),
                lambda: check_int("epochs", self.epochs), lambda: check_int("batch_size", self.batch_size),
                *(lambda n=n: check_number(n, getattr(self, n), 0.0, low_open=True)
                  for n in ("lr", "feature_lr", "w_reject", "w_accept")),
                lambda: check_number("weight_decay", self.weight_decay, 0.0),
                lambda: check_number("warmup_ratio", self.warmup_ratio, 0.0, 1.0),
                lambda: check_number("max_grad_norm", self.max_grad_norm, 0.0),
                lambda: check_int("seed", self.seed, minimum=0),
                lambda: check_choice("input state", self.input_state, INPUT_STATES))
        if self.use_confidence_features and self.input_state != PRODUCING_STATE:
            raise TrainingError(f"confidence features need the {PRODUCING_STATE!r} input state")
        return self


def train_head(
    data_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    num_layers: int = 3,
    epochs: int = 3,
    batch_size: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.03,
    w_reject: float = 6.0,
    w_accept: float = 1.0,
    max_grad_norm: float = 1.0,
    seed: int = 0,
    resume: bool = False,
    draft_model_id: str | None = None,
    target_model_id: str | None = None,
    input_state: str = DRAFTED_TOKEN,
    use_confidence_features: bool = False,
    feature_lr: float = 1e-2,
    cpu: bool = False,
    show_progress: bool = True,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> dict[str, Any]:
    """Train an acceptance head from a make-data folder; returns the trainer state (history, best metrics).

    Args:
        data_dir (`str` or `os.PathLike`): the make-data folder. output_dir (`str` or `os.PathLike`): must be new,
            empty or a head folder this package wrote (a README.md written by hand there is kept).
        num_layers, epochs, batch_size, lr, weight_decay, warmup_ratio, w_reject, w_accept, max_grad_norm, seed,
            input_state, use_confidence_features, feature_lr: the `TrainArgs` fields, with their types and defaults.
        draft_model_id, target_model_id (`str`, *optional*): the ids the head declares; default: the data set's.
        resume, cpu (`bool`, *optional*, defaults to `False`): continue `output_dir`'s run (else refuse it); use CPU.
        show_progress (`bool`, *optional*, defaults to `True`), on_epoch_end (`Callable[[int, dict], None]`,
            *optional*): progress bars and per-epoch lines; a callback given each epoch (1-based) and its metrics.
    Returns:
        `dict[str, Any]`: `args`, `data`, `epochs_done`, `history` (per-epoch metrics), `best` (epoch, score, metrics).
    Raises:
        TrainingError: bad settings, folder or data set, or ids that do not match the data set's."""
    require_train_extras("train", "accelerate", "datasets", "sklearn", "tqdm")
    args = TrainArgs(num_layers, epochs, batch_size, lr, weight_decay, warmup_ratio, w_reject, w_accept,
                     max_grad_norm, seed, input_state, use_confidence_features, feature_lr).check()
    output_dir = Path(output_dir)
    check_head_folder(output_dir)  # before any work: refuse a folder holding files we did not write
    with step(f"train: reading the data set {data_dir}", show_progress):
        data = load_training_data(Path(data_dir), input_state, use_confidence_features,
                                  {"draft": draft_model_id, "target": target_model_id})
    warn_small_dev_split(int(data.manifest.get("totals", {}).get("dev", 0)), f"The data set in {data_dir}")
    state, checkpoint = start_or_resume(output_dir, data, args, resume)
    trainer = Trainer(args, data, cpu, checkpoint)
    for epoch in range(state["epochs_done"], args.epochs):
        metrics = {**trainer.train_epoch(epoch, show_progress), **trainer.evaluate()}
        improved = record_epoch(state, metrics)
        trainer.save(output_dir, state, improved)
        if show_progress and trainer.accelerator.is_main_process:
            print_epoch(metrics)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, metrics)
    trainer.save_best(output_dir, state)  # the final history, recorded in the best head
    return state


def start_or_resume(output_dir: Path, data: TrainingData, args: TrainArgs, resume: bool):
    """(trainer state, checkpoint or None): a new run, or the checked checkpoint of the same data and settings."""
    if not resume:
        if has_checkpoint(output_dir):
            raise TrainingError(f"{output_dir} already holds a training run; pass resume (--resume) to continue it "
                                "or choose a new folder")
        return {"args": asdict(args), "data": data_identity(data.meta), "epochs_done": 0, "history": [],
                "best": None}, None
    checkpoint = load_checkpoint(output_dir)
    if checkpoint is None:
        return start_or_resume(output_dir, data, args, resume=False)
    state = checkpoint.state
    diffs = diff_settings(comparable(state["data"]), comparable(data_identity(data.meta))) \
        + diff_settings(state["args"], asdict(args))
    if diffs:
        raise TrainingError(f"Cannot resume {output_dir}: the checkpoint was made for other data or settings: "
                            + "; ".join(diffs))
    return state, checkpoint


def record_epoch(state: dict, metrics: dict) -> bool:
    """Append the epoch's metrics; return whether it is the best so far (dev weighted BCE, else train's)."""
    state["history"].append(metrics)
    score = metrics.get("weighted_bce", metrics["train_weighted_bce"])
    improved = state["best"] is None or score < state["best"]["score"]
    if improved:
        state["best"] = {"epoch": metrics["epoch"], "score": score, "metrics": metrics}
    state["epochs_done"] = metrics["epoch"]
    return improved


class Trainer:
    """The head, optimizer and schedule under `accelerate`, and one epoch of training, evaluation and saving."""

    def __init__(self, args: TrainArgs, data: TrainingData, cpu: bool, checkpoint=None):
        accelerate = train_extra("accelerate")
        from transformers import get_cosine_schedule_with_warmup

        self.args, self.data = args, data
        self.accelerator = accelerate.Accelerator(cpu=cpu)
        accelerate.utils.set_seed(args.seed)
        head = new_head(args, data.meta["hidden_size"])
        optimizer = torch.optim.AdamW(param_groups(head, args), lr=args.lr, weight_decay=args.weight_decay)
        world = self.accelerator.num_processes
        total = max(1, len(epoch_batches(len(data.train), args.batch_size, args.seed, 0, world)) // world * args.epochs)
        self.scheduler = get_cosine_schedule_with_warmup(optimizer, int(round(args.warmup_ratio * total)), total)
        self.model, self.optimizer = self.accelerator.prepare(_Logits(head), optimizer)
        self.best_state = None
        if checkpoint is not None:
            self.head.load_state_dict(checkpoint.model)
            self.optimizer.load_state_dict(checkpoint.optimizer)
            self.scheduler.load_state_dict(checkpoint.scheduler)
            self.best_state = checkpoint.best_head

    @property
    def head(self) -> AcceptanceHead:
        return self.accelerator.unwrap_model(self.model).head

    def train_epoch(self, epoch: int, show_progress: bool) -> dict:
        """One pass over this process's share of the shuffled training responses."""
        a, args = self.accelerator, self.args
        self.model.train()
        batches = epoch_batches(len(self.data.train), args.batch_size, args.seed, epoch, a.num_processes)
        total_loss, total_rows = 0.0, 0
        for batch in progress(batches[a.process_index::a.num_processes], desc=f"train epoch {epoch + 1}/{args.epochs}",
                              disable=not show_progress or not a.is_local_main_process, unit="batch"):
            hidden, features, labels = batch_arrays(self.data.train, batch, self.data.columns)
            features = None if features is None else features.to(a.device)
            labels = labels.to(a.device)
            loss = weighted_bce_from_logits(self.model(hidden.to(a.device), features), labels, args.w_accept,
                                            args.w_reject)
            self.optimizer.zero_grad()
            a.backward(loss)
            if args.max_grad_norm:
                a.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            total_loss, total_rows = total_loss + float(loss.detach()) * len(labels), total_rows + len(labels)
        return {"epoch": epoch + 1, "train_weighted_bce": total_loss / max(total_rows, 1),
                "lr": self.scheduler.get_last_lr()[0]}

    def evaluate(self) -> dict:
        """Dev metrics of the current head (none without a dev split)."""
        head, data = self.head, self.data
        head.eval()
        if not len(data.dev_labels):
            return {}
        logits = predict_logits(head, data.dev_hidden, data.dev_features).numpy()
        return evaluate_predictions(logits, data.dev_labels, self.args.w_accept, self.args.w_reject, data.base_rate)

    def save(self, output_dir: Path, state: dict, improved: bool) -> None:
        """Keep the head's weights when it improved, then save the checkpoint of this epoch (main process). The
        head folder itself is written only at the end (`save_best`)."""
        if improved:
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.head.state_dict().items()}
        if self.accelerator.is_main_process:
            save_checkpoint(output_dir, Checkpoint(state=state, model=self.head.state_dict(),
                                                   optimizer=self.optimizer.state_dict(),
                                                   scheduler=self.scheduler.state_dict(), best_head=self.best_state))
        self.accelerator.wait_for_everyone()

    def save_best(self, output_dir: Path, state: dict) -> None:
        """Write the best head (from the checkpointed best weights) with the whole history: the only time the
        head folder is written, so a head there is always a finished run's."""
        if self.accelerator.is_main_process and self.best_state is not None:
            best = new_head(self.args, self.data.meta["hidden_size"])
            best.load_state_dict(self.best_state)
            self.write_head(best, output_dir, state)

    def write_head(self, head: AcceptanceHead, output_dir: Path, state: dict) -> None:
        head.training_info = trained_head_info(head, self.data.meta, self.data.manifest, self.data.data_dir,
                                               asdict(self.args), state)
        save_head(head, output_dir)


def new_head(args: TrainArgs, hidden_size: int) -> AcceptanceHead:
    """A fresh head predicting P = 0.5 everywhere: real draft hidden states (post final norm) have large norms,
    and a randomly initialised classifier then starts at huge logits and losses."""
    head = AcceptanceHead(hidden_size=hidden_size, num_layers=args.num_layers, input_state=args.input_state,
                          use_confidence_features=args.use_confidence_features)
    torch.nn.init.zeros_(head.classifier.weight)
    torch.nn.init.zeros_(head.classifier.bias)
    return head


def param_groups(head: AcceptanceHead, args: TrainArgs) -> list[dict]:
    """The hidden-state path learns at `lr`, the confidence-feature weights (if any) at `feature_lr`."""
    features = list(head.feature_classifier.parameters()) if head.feature_classifier is not None else []
    groups = [{"params": [p for n, p in head.named_parameters() if not n.startswith("feature_classifier.")],
               "lr": args.lr}]
    if features:
        groups.append({"params": features, "lr": args.feature_lr})
    return groups


class _Logits(torch.nn.Module):
    """Wraps the head so that its forward returns logits: what `accelerate`/DDP wraps and trains."""

    def __init__(self, head: AcceptanceHead):
        super().__init__()
        self.head = head

    def forward(self, hidden: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.head.logits(hidden, features)


def print_epoch(m: dict) -> None:
    from rich.console import Console

    parts = [f"epoch {m['epoch']}", f"train wBCE {m['train_weighted_bce']:.4f}"]
    for key, name in (("weighted_bce", "dev wBCE"), ("bce", "dev BCE"), ("kl", "KL"), ("auroc_reject", "AUROC(rej)"),
                      ("ece", "ECE"), ("baseline_bce", "base-rate BCE")):
        if key in m:
            parts.append(f"{name} {m[key]:.4f}")
    Console(stderr=True).print(" | ".join(parts))
