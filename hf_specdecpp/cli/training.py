"""The training commands: `make-data`, `train`, `calibrate`, `push` (see `register`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import check_inputs, flag, friendly, json_flag, report

MAX_CANDIDATES = 64  # the largest cap calibrate considers (hf_specdecpp.training.calibrate.MAX_CANDIDATES_LIMIT)


def register(app: typer.Typer) -> None:
    """Add `make-data`, `train`, `calibrate` and `push` to the typer `app`."""
    for name, command in (("make-data", make_data_command), ("train", train_command),
                          ("calibrate", calibrate_command), ("push", push_command)):
        hint = ("no head was written yet; add --resume to the same command to continue from the last epoch."
                if name == "train" else "run the same command again to resume.")
        app.command(name)(friendly(command, on_interrupt=hint))


def _number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False):
    """A typer callback accepting a finite number in the interval (or no value); otherwise a usage error that
    names the option (typer's own `min=`/`max=` let NaN through and have no open ends)."""

    def callback(value):
        if value is None:
            return value
        from ..core.validation import check_number

        try:
            check_number("", value, low, high, low_open=low_open, high_open=high_open)
        except ValueError as err:
            raise typer.BadParameter(str(err).strip()) from None
        return value

    return callback


def make_data_command(
    output_dir: Path = typer.Argument(..., help="Folder of the data set (created; resumed if it exists).",
                                      metavar="OUTPUT_DIR"),
    draft: str = typer.Option(..., "--draft", help="Draft model id or path."),
    target: str = typer.Option(..., "--target", help="Target model id or path."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="JSONL file: `prompt` or chat `messages` per line."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="A `datasets` dataset (Hub name or local path)."),
    dataset_config: Optional[str] = typer.Option(None, "--dataset-config", help="Dataset configuration name."),
    dataset_split: str = typer.Option("train", "--dataset-split", help="Dataset split."),
    prompt_column: str = typer.Option("prompt", "--prompt-column", help="Column/field with the prompt or messages."),
    response_column: Optional[str] = typer.Option(None, "--response-column",
                                                  help="Column/field with the answer (JSONL default: response)."),
    chat: bool = flag(False, "--chat", help="Wrap plain prompts in the TARGET's chat template."),
    responses: str = typer.Option("target", "--responses",
                                  help="target: generate with the target (the served distribution); dataset: use "
                                       "the data set's answers (forward passes only, cheaper, off-distribution)."),
    max_prompts: Optional[int] = typer.Option(None, "--max-prompts", min=1, help="Use at most this many prompts."),
    max_prompt_tokens: int = typer.Option(512, "--max-prompt-tokens", min=1, help="Keep the last N prompt tokens."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="Response length limit."),
    temperature: float = typer.Option(0.0, "--temperature", callback=_number(0.0),
                                      help="Served decoding: 0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p", callback=_number(0.0, 1.0, low_open=True),
                                help="Served decoding: top-p (1 = off)."),
    top_k: int = typer.Option(0, "--top-k", min=0, help="Served decoding: top-k (0 = off)."),
    mix_ratio: float = typer.Option(0.15, "--mix-ratio", callback=_number(0.0, 1.0),
                                    help="Token mixing: probability of keeping X_i."),
    dev_fraction: float = typer.Option(0.1, "--dev-fraction", callback=_number(0.0, 1.0, high_open=True),
                                       help="Fraction of prompts in the dev split."),
    shard_size: int = typer.Option(64, "--shard-size", min=1, help="Prompts per shard (the unit of resumption)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Prompts per forward/generate batch."),
    seed: int = typer.Option(0, "--seed", min=0),
    head_inputs: str = typer.Option("all", "--head-inputs",
                                    help="all: inputs of both head types; producing_state: only what "
                                         "producing-state heads train on (about 40% faster)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ... (default: cuda if any)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 on a GPU or a CPU with native bf16, else fp32), "
                                                      "float32, bfloat16, float16."),
    overwrite: bool = flag(False, "--overwrite", help="Delete the data set make-data wrote in OUTPUT_DIR first "
                                                      "(only its own files; others stay)."),
    as_json: bool = json_flag(),
) -> None:
    """Build the head's training set: labels + cached draft hidden states (resumable, sharded Arrow)."""
    check_inputs(files={"Prompt file": prompts}, models=(draft, target), dtype=dtype)
    from ..training.data import make_data
    from ..utils.io import read_json

    out = make_data(
        output_dir, draft=draft, target=target, prompts_file=prompts, dataset=dataset,
        dataset_config=dataset_config, dataset_split=dataset_split, prompt_column=prompt_column,
        response_column=response_column, chat=chat, responses=responses, max_prompts=max_prompts,
        max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens, temperature=temperature,
        top_p=top_p, top_k=top_k, mix_ratio=mix_ratio, dev_fraction=dev_fraction, shard_size=shard_size,
        batch_size=batch_size, seed=seed, head_inputs=head_inputs, device=device, dtype=dtype, overwrite=overwrite,
    )
    totals = read_json(out / "progress.json").get("totals", {})
    report([f"Data set written to {out}: {totals.get('train', 0)} train and {totals.get('dev', 0)} dev responses "
            f"({totals.get('train_tokens', 0)} and {totals.get('dev_tokens', 0)} response tokens)"
            + (f"; {totals['skipped']} prompts skipped (empty)" if totals.get("skipped") else "") + ".",
            f"Next: hf-specdecpp train {out} HEAD_DIR"],
           {"output_dir": str(out), **totals}, as_json)


def train_command(
    data_dir: Path = typer.Argument(..., help="A make-data folder.", metavar="DATA_DIR"),
    output_dir: Path = typer.Argument(..., help="Where the best head (save_pretrained, once the last epoch is done) "
                                                "and the checkpoint go.", metavar="OUTPUT_DIR"),
    num_layers: int = typer.Option(3, "--num-layers", min=0, help="Residual blocks of the head."),
    epochs: int = typer.Option(3, "--epochs", min=1),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Responses per optimizer step."),
    lr: float = typer.Option(1e-3, "--lr", callback=_number(0.0, low_open=True)),
    weight_decay: float = typer.Option(0.01, "--weight-decay", callback=_number(0.0)),
    warmup_ratio: float = typer.Option(0.03, "--warmup-ratio", callback=_number(0.0, 1.0)),
    w_reject: float = typer.Option(6.0, "--w-reject", callback=_number(0.0, low_open=True),
                                   help="Loss weight of rejected tokens."),
    w_accept: float = typer.Option(1.0, "--w-accept", callback=_number(0.0, low_open=True),
                                   help="Loss weight of accepted tokens."),
    seed: int = typer.Option(0, "--seed", min=0),
    resume: bool = flag(False, "--resume", help="Continue the run saved in OUTPUT_DIR/checkpoint."),
    draft_id: Optional[str] = typer.Option(None, "--draft-id",
                                           help="Draft id the head declares (must match the data)."),
    target_id: Optional[str] = typer.Option(None, "--target-id", help="Target id the head declares (must match)."),
    input_state: str = typer.Option("drafted_token", "--input-state",
                                    help="drafted_token (reference SpecDec++: the state at the token, one-step "
                                         "lag) or producing_state (the state that produced it: no lag)."),
    confidence_features: bool = typer.Option(False, "--confidence-features/--no-confidence-features",
                                             help="Also read the draft distribution's confidence (producing_state)."),
    feature_lr: float = typer.Option(1e-2, "--feature-lr", callback=_number(0.0, low_open=True),
                                     help="Learning rate of the confidence-feature weights."),
    cpu: bool = flag(False, "--cpu", help="Train on CPU even when a GPU is present."),
    as_json: bool = json_flag(),
) -> None:
    """Train the acceptance head on cached features (the draft stays frozen and is not run)."""
    check_inputs(folders={"data set": data_dir})
    from ..training.train import train_head

    state = train_head(data_dir, output_dir, num_layers=num_layers, epochs=epochs, batch_size=batch_size, lr=lr,
                       weight_decay=weight_decay, warmup_ratio=warmup_ratio, w_reject=w_reject, w_accept=w_accept,
                       seed=seed, resume=resume, draft_model_id=draft_id, target_model_id=target_id,
                       input_state=input_state, use_confidence_features=confidence_features,
                       feature_lr=feature_lr, cpu=cpu)
    best = state["best"] or {}
    metrics = best.get("metrics", {})
    shown = ", ".join(f"{name} {metrics[key]:.4f}" for key, name in (("weighted_bce", "dev wBCE"),
                                                                   ("auroc_reject", "AUROC(rej)"))
                      if key in metrics)
    report([f"Head written to {output_dir}: best epoch {best.get('epoch')} of {epochs}" + (f" ({shown})" if shown
                                                                                        else "") + ".",
            f"Next: hf-specdecpp calibrate {output_dir} {data_dir}"],
           {"output_dir": str(output_dir), "best": state["best"]}, as_json)


def calibrate_command(
    head_dir: Path = typer.Argument(..., help="A trained head folder.", metavar="HEAD_DIR"),
    data_dir: Path = typer.Argument(..., help="The make-data folder (its dev split is simulated).",
                                    metavar="DATA_DIR"),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir",
                                              help="Save the calibrated head here (default: in place)."),
    draft: Optional[str] = typer.Option(None, "--draft", help="Draft for timing (default: the data set's)."),
    target: Optional[str] = typer.Option(None, "--target", help="Target for timing (default: the data set's)."),
    cost_ratio: Optional[float] = typer.Option(None, "--cost-ratio", callback=_number(0.0, low_open=True),
                                               help="Skip timing: draft step / target step."),
    costs_from: Optional[Path] = typer.Option(None, "--costs-from",
                                              help="Skip timing: reuse the costs measured for another head of "
                                                   "the same pair on this machine (its folder), or a cost-curve "
                                                   "JSON (benchmarks/measure_costs.py, bench --exact)."),
    verify_slope: Optional[float] = typer.Option(None, "--verify-slope", callback=_number(0.0),
                                                 help="Extra verify cost per candidate, in target steps."),
    min_candidates: int = typer.Option(1, "--min-candidates", min=1, max=MAX_CANDIDATES),
    max_candidates: int = typer.Option(20, "--max-candidates", min=1, max=MAX_CANDIDATES,
                                       help="Upper bound on candidates per round."),
    search_cap: bool = typer.Option(True, "--search-cap/--fixed-cap",
                                    help="Choose the cap on candidates per round (<= --max-candidates) with h."),
    cap_tolerance: float = typer.Option(0.0, "--cap-tolerance", callback=_number(0.0),
                                        help="Keep the largest cap within this relative time of the best one "
                                             "(0: the best)."),
    num_draws: int = typer.Option(8, "--num-draws", min=1, help="Sampling: Bernoulli draws of the acceptances."),
    repeats: int = typer.Option(10, "--repeats", min=1, help="Timed repetitions per forward pass."),
    seed: int = typer.Option(0, "--seed", min=0),
    device: Optional[str] = typer.Option(None, "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
    as_json: bool = json_flag(),
) -> None:
    """Measure the cost ratio and choose the threshold by simulating rounds on the dev split."""
    check_inputs(folders={"acceptance head": head_dir, "data set": data_dir}, models=(draft, target), dtype=dtype)
    from ..training.calibrate import calibrate_head

    r = calibrate_head(head_dir, data_dir, output_dir=output_dir, draft=draft, target=target, cost_ratio=cost_ratio,
                       verify_slope=verify_slope, costs_from=costs_from, min_candidates=min_candidates,
                       max_candidates=max_candidates, search_cap=search_cap, cap_tolerance=cap_tolerance,
                       num_draws=num_draws, repeats=repeats, seed=seed, device=device, dtype=dtype)
    report([f"Calibrated head written to {output_dir or head_dir}: threshold h = {r['threshold']:g}, at most "
            f"{r['max_candidates']} candidates per round.",
            f"Simulated on {r['dev_responses']} dev responses: {r['speedup']:.2f}x faster than the target alone "
            f"(best fixed K = {r['best_fixed_k']}: {r['fixed_k_speedup']:.2f}x), "
            f"cost ratio c = {r['cost_ratio']:.3g}."],
           {k: r[k] for k in ("threshold", "max_candidates", "time_per_token", "speedup", "best_fixed_k",
                              "fixed_k_time_per_token", "fixed_k_speedup", "oracle_speedup", "cost_ratio",
                              "dev_responses")}, as_json)


def push_command(
    head_dir: Path = typer.Argument(..., help="A trained (and calibrated) head folder.", metavar="HEAD_DIR"),
    repo_id: str = typer.Argument(..., help="Hub repo id, e.g. user/acchead-qwen2.5-coder-0.5b-1.5b.",
                                  metavar="REPO_ID"),
    private: bool = flag(False, "--private", help="Create the repo as private (an existing repo keeps its "
                                                  "visibility)."),
    token: Optional[str] = typer.Option(None, "--token", help="Hub token (default: the logged-in one)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to push to."),
    local_dir: Optional[Path] = typer.Option(None, "--local-dir", help="Write the upload to this folder instead."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Hub endpoint (default: HF_ENDPOINT or the Hub)."),
    as_json: bool = json_flag(),
) -> None:
    """Upload safetensors + config + model card (ids, data, decoding, metrics, threshold) to the Hub."""
    check_inputs(folders={"acceptance head": head_dir})
    from ..training.publish import export_head, push_head

    if local_dir is not None:
        exported = str(export_head(head_dir, local_dir, repo_id=repo_id))
        report([f"Wrote what push would upload to {exported}."], {"exported": exported}, as_json)
        return
    commit = push_head(head_dir, repo_id, token=token, private=private or None, revision=revision, endpoint=endpoint)
    report([f"Pushed {head_dir} to {repo_id}: {commit}"], {"commit": commit}, as_json)
