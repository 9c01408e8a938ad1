"""The training commands: `make-data`, `train`, `calibrate`, `push` (see `register`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import friendly, print_json


def register(app: typer.Typer) -> None:
    """Add `make-data`, `train`, `calibrate` and `push` to the typer `app`."""

    @app.command("make-data")
    @friendly
    def make_data_command(
        output_dir: Path = typer.Argument(..., help="Folder of the data set (created; resumed if it exists)."),
        draft: str = typer.Option(..., "--draft", help="Draft model id or path."),
        target: str = typer.Option(..., "--target", help="Target model id or path."),
        prompts: Optional[Path] = typer.Option(None, "--prompts", help="JSONL file: `prompt` or chat `messages` per line."),
        dataset: Optional[str] = typer.Option(None, "--dataset", help="A `datasets` dataset (Hub name or local path)."),
        dataset_config: Optional[str] = typer.Option(None, "--dataset-config", help="Dataset configuration name."),
        dataset_split: str = typer.Option("train", "--dataset-split", help="Dataset split."),
        prompt_column: str = typer.Option("prompt", "--prompt-column", help="Column/field with the prompt or messages."),
        response_column: Optional[str] = typer.Option(None, "--response-column",
                                                      help="Column/field with the answer (JSONL default: response)."),
        chat: bool = typer.Option(False, "--chat", help="Wrap plain prompts in the TARGET's chat template."),
        responses: str = typer.Option("target", "--responses",
                                      help="target: generate with the target (the served distribution); dataset: use "
                                           "the data set's answers (forward passes only, cheaper, off-distribution)."),
        max_prompts: Optional[int] = typer.Option(None, "--max-prompts", help="Use at most this many prompts."),
        max_prompt_tokens: int = typer.Option(512, "--max-prompt-tokens", help="Keep the last N prompt tokens."),
        max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Response length limit."),
        temperature: float = typer.Option(0.0, "--temperature", help="Served decoding: 0 = greedy."),
        top_p: float = typer.Option(1.0, "--top-p", help="Served decoding: top-p (1 = off)."),
        top_k: int = typer.Option(0, "--top-k", help="Served decoding: top-k (0 = off)."),
        mix_ratio: float = typer.Option(0.15, "--mix-ratio", help="Token mixing: probability of keeping X_i."),
        dev_fraction: float = typer.Option(0.1, "--dev-fraction", help="Fraction of prompts in the dev split."),
        shard_size: int = typer.Option(64, "--shard-size", help="Prompts per shard (the unit of resumption)."),
        batch_size: int = typer.Option(8, "--batch-size", help="Prompts per forward/generate batch."),
        seed: int = typer.Option(0, "--seed"),
        device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ... (default: cuda if any)."),
        dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Delete an existing data set in OUTPUT_DIR first."),
    ) -> None:
        """Build the head's training set: labels + cached draft hidden states (resumable, sharded Arrow)."""
        from ..training.data import make_data
        from ..utils.io import read_json

        out = make_data(
            output_dir, draft=draft, target=target, prompts_file=prompts, dataset=dataset,
            dataset_config=dataset_config, dataset_split=dataset_split, prompt_column=prompt_column,
            response_column=response_column, chat=chat, responses=responses, max_prompts=max_prompts,
            max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens, temperature=temperature,
            top_p=top_p, top_k=top_k, mix_ratio=mix_ratio, dev_fraction=dev_fraction, shard_size=shard_size,
            batch_size=batch_size, seed=seed, device=device, dtype=dtype, overwrite=overwrite,
        )
        print_json({"output_dir": str(out), **read_json(out / "progress.json").get("totals", {})})

    @app.command("train")
    @friendly
    def train_command(
        data_dir: Path = typer.Argument(..., help="A make-data folder."),
        output_dir: Path = typer.Argument(..., help="Where the best head (save_pretrained) and checkpoint go."),
        num_layers: int = typer.Option(3, "--num-layers", help="Residual blocks of the head."),
        epochs: int = typer.Option(3, "--epochs"),
        batch_size: int = typer.Option(16, "--batch-size", help="Responses per optimizer step."),
        lr: float = typer.Option(1e-3, "--lr"),
        weight_decay: float = typer.Option(0.01, "--weight-decay"),
        warmup_ratio: float = typer.Option(0.03, "--warmup-ratio"),
        w_reject: float = typer.Option(6.0, "--w-reject", help="Loss weight of rejected tokens."),
        w_accept: float = typer.Option(1.0, "--w-accept", help="Loss weight of accepted tokens."),
        seed: int = typer.Option(0, "--seed"),
        resume: bool = typer.Option(False, "--resume", help="Continue the run saved in OUTPUT_DIR/checkpoint."),
        draft_id: Optional[str] = typer.Option(None, "--draft-id", help="Draft id the head declares (must match the data)."),
        target_id: Optional[str] = typer.Option(None, "--target-id", help="Target id the head declares (must match)."),
        input_state: str = typer.Option("drafted_token", "--input-state",
                                        help="drafted_token (reference SpecDec++: the state at the token, one-step "
                                             "lag) or producing_state (the state that produced it: no lag)."),
        confidence_features: bool = typer.Option(False, "--confidence-features/--no-confidence-features",
                                                 help="Also read the draft distribution's confidence (producing_state)."),
        feature_lr: float = typer.Option(1e-2, "--feature-lr", help="Learning rate of the confidence-feature weights."),
        cpu: bool = typer.Option(False, "--cpu", help="Train on CPU even when a GPU is present."),
    ) -> None:
        """Train the acceptance head on cached features (the draft stays frozen and is not run)."""
        from ..training.train import train_head

        state = train_head(data_dir, output_dir, num_layers=num_layers, epochs=epochs, batch_size=batch_size, lr=lr,
                           weight_decay=weight_decay, warmup_ratio=warmup_ratio, w_reject=w_reject, w_accept=w_accept,
                           seed=seed, resume=resume, draft_model_id=draft_id, target_model_id=target_id,
                           input_state=input_state, use_confidence_features=confidence_features,
                           feature_lr=feature_lr, cpu=cpu)
        print_json({"output_dir": str(output_dir), "best": state["best"]})

    @app.command("calibrate")
    @friendly
    def calibrate_command(
        head_dir: Path = typer.Argument(..., help="A trained head folder."),
        data_dir: Path = typer.Argument(..., help="The make-data folder (its dev split is simulated)."),
        output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="Save the calibrated head here (default: in place)."),
        draft: Optional[str] = typer.Option(None, "--draft", help="Draft for timing (default: the data set's)."),
        target: Optional[str] = typer.Option(None, "--target", help="Target for timing (default: the data set's)."),
        cost_ratio: Optional[float] = typer.Option(None, "--cost-ratio", help="Skip timing: draft step / target step."),
        costs_from: Optional[Path] = typer.Option(None, "--costs-from",
                                                  help="Skip timing: reuse the costs measured for another head of "
                                                       "the same pair on this machine."),
        verify_slope: Optional[float] = typer.Option(None, "--verify-slope",
                                                     help="Extra verify cost per candidate, in target steps."),
        min_candidates: int = typer.Option(1, "--min-candidates"),
        max_candidates: int = typer.Option(20, "--max-candidates", help="Upper bound on candidates per round."),
        search_cap: bool = typer.Option(True, "--search-cap/--fixed-cap",
                                        help="Choose the cap on candidates per round (<= --max-candidates) with h."),
        cap_tolerance: float = typer.Option(0.0, "--cap-tolerance",
                                            help="Keep the largest cap within this relative time of the best one (0: the best)."),
        num_draws: int = typer.Option(8, "--num-draws", help="Sampling: Bernoulli draws of the acceptances."),
        repeats: int = typer.Option(10, "--repeats", help="Timed repetitions per forward pass."),
        seed: int = typer.Option(0, "--seed"),
        device: Optional[str] = typer.Option(None, "--device"),
        dtype: str = typer.Option("auto", "--dtype"),
    ) -> None:
        """Measure the cost ratio and choose the threshold by simulating rounds on the dev split."""
        from ..training.calibrate import calibrate_head

        r = calibrate_head(head_dir, data_dir, output_dir=output_dir, draft=draft, target=target, cost_ratio=cost_ratio,
                           verify_slope=verify_slope, costs_from=costs_from, min_candidates=min_candidates, max_candidates=max_candidates,
                           search_cap=search_cap, cap_tolerance=cap_tolerance, num_draws=num_draws, repeats=repeats, seed=seed, device=device, dtype=dtype)
        print_json({k: r[k] for k in ("threshold", "max_candidates", "time_per_token", "speedup", "best_fixed_k", "fixed_k_time_per_token",
                                  "fixed_k_speedup", "oracle_speedup", "cost_ratio")})

    @app.command("push")
    @friendly
    def push_command(
        head_dir: Path = typer.Argument(..., help="A trained (and calibrated) head folder."),
        repo_id: str = typer.Argument(..., help="Hub repo id, e.g. user/acchead-qwen2.5-coder-0.5b-1.5b."),
        private: bool = typer.Option(False, "--private"),
        token: Optional[str] = typer.Option(None, "--token", help="Hub token (default: the logged-in one)."),
        revision: Optional[str] = typer.Option(None, "--revision", help="Branch to push to."),
        local_dir: Optional[Path] = typer.Option(None, "--local-dir", help="Write the upload to this folder instead."),
    ) -> None:
        """Upload safetensors + config + model card (ids, data, decoding, metrics, threshold) to the Hub."""
        from ..training.publish import export_head, push_head

        if local_dir is not None:
            print_json({"exported": str(export_head(head_dir, local_dir, repo_id=repo_id))})
            return
        print_json({"commit": push_head(head_dir, repo_id, token=token, private=private or None, revision=revision)})
