"""The `recalibrate` command: re-choose a head's policy for this machine from the traces it ships (seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import friendly, parse_dtype_option, print_json


def register(app: typer.Typer) -> None:
    """Add `recalibrate` to the typer `app`."""

    @app.command("recalibrate")
    @friendly
    def recalibrate_command(
        head: str = typer.Argument(..., help="A head folder or Hub repo id (with dev traces)."),
        draft: str = typer.Option(..., "--draft", help="Draft model id or path."),
        target: str = typer.Option(..., "--target", help="Target model id or path."),
        output_dir: Optional[Path] = typer.Option(None, "--output-dir",
                                                  help="Save the re-calibrated head here (default: in place for a "
                                                       "local head folder)."),
        device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ... (default: cuda if any)."),
        dtype: str = typer.Option("bfloat16", "--dtype", help="float32, bfloat16 or float16 (as you will run)."),
        repeats: int = typer.Option(3, "--repeats", min=1, max=100, help="Timed repetitions per forward pass."),
        max_candidates: int = typer.Option(20, "--max-candidates", min=1, max=64,
                                           help="Largest cap on candidates per round to consider."),
    ) -> None:
        """Time the draft and the target on this machine and re-simulate the head's shipped dev traces."""
        torch_dtype = parse_dtype_option(dtype)
        from ..head import AcceptanceHead
        from ..methods.specdecpp.calibration import recalibrate
        from ..training.common import TrainingError, load_model, pick_device

        if output_dir is None and not Path(head).is_dir():
            raise TrainingError(f"{head!r} is not a local folder: pass --output-dir for the re-calibrated head")
        acceptance_head = AcceptanceHead.from_pretrained(head)
        dev = pick_device(device)
        draft_model, target_model = load_model(draft, dev, torch_dtype), load_model(target, dev, torch_dtype)
        try:
            result = recalibrate(acceptance_head, draft_model, target_model, max_candidates=max_candidates,
                                 repeats=repeats)
        except ValueError as err:
            raise TrainingError(str(err)) from None
        if result.policy is None:  # noisy timings or a losing policy: keep the head as it is
            raise TrainingError(f"{result.describe()}. {head} was left as it is; run again on a quiet machine "
                                "(nothing else running) or with more --repeats.")
        acceptance_head.policy = result.policy
        if output_dir is None:
            keep_previous_policy(Path(head))
        acceptance_head.save_pretrained(str(output_dir or head))
        print_json({"head": str(output_dir or head), "policy": acceptance_head.policy.to_dict(),
                    "costs": result.costs.to_dict(), "measurements": result.attempts,
                    "seconds": round(result.seconds, 1)})


def keep_previous_policy(head_dir: Path) -> None:
    """Before re-calibrating a head folder in place, keep its current policy as `policy.previous.json`."""
    current = head_dir / "policy.json"
    if current.is_file():
        (head_dir / "policy.previous.json").write_bytes(current.read_bytes())
