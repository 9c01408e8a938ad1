"""Train an acceptance head for your own draft/target pair, end to end, and use it from the Hub or a folder.

    python examples/train_head.py --workdir runs/my-head --local-dir runs/my-head/upload    # offline, seconds
    python examples/train_head.py --workdir runs/my-head --repo-id me/my-head               # huggingface.co
    python examples/train_head.py --workdir runs/my-head --endpoint http://127.0.0.1:8080 --repo-id me/my-head
    python examples/train_head.py --workdir runs/my-head --draft ORG/DRAFT --target ORG/TARGET --prompts p.jsonl \
        --local-dir runs/my-head/upload

The steps are the package's training commands as Python calls (each is also a CLI command):

1. make-data: the target answers the prompts with the decoding the head will serve (greedy here); one pass of
   each model gives every drafted token's acceptance label; the draft's hidden states are cached.
2. train: fit the head on the cached states (the models are not run).
3. calibrate: time the draft and the target here and choose the stopping threshold by simulating rounds.
4. push: upload the head (weights, config, policy, dev traces, model card) to a Hub repo at `--endpoint`
   (default: HF_ENDPOINT or huggingface.co; pushing there needs `huggingface-cli login` or --token). Any
   Hub-compatible server you run works as an endpoint; there is none to start here (the test suite's
   `tests/hub_server.py` is an in-process fake). With `--local-dir` nothing goes online: the folder receives
   exactly what push would upload (`hf-specdecpp push HEAD REPO --local-dir DIR`).
5. load it back with `AcceptanceHead.from_pretrained(repo_id or folder)` and generate with
   `candidate_generator=SpecDecPPMethod(head=head)`: greedy output equal to the target's own.

Without --draft/--target the pair is a tiny Llama built from configs (`hf_specdecpp.testing.save_tiny_pair`)
with random word prompts, so the whole pipeline runs offline in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, type=Path, help="folder for the models, data and head")
    parser.add_argument("--endpoint", default=None, help="Hub endpoint to push to and load from")
    parser.add_argument("--local-dir", default=None, type=Path,
                        help="write what push would upload to this folder and load the head from it (offline)")
    parser.add_argument("--repo-id", default="me/acceptance-head-tiny", help="Hub repo of the head")
    parser.add_argument("--token", default=None, help="Hub token (default: the logged-in one or HF_TOKEN)")
    parser.add_argument("--draft", default=None, help="draft model id or folder (default: a tiny pair)")
    parser.add_argument("--target", default=None, help="target model id or folder (default: a tiny pair)")
    parser.add_argument("--prompts", default=None, type=Path, help="JSONL prompts (`prompt` or chat `messages`)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    return parser.parse_args(argv)


def prepare_pair(args) -> tuple[str, str, list]:
    """(target, draft, prompt records): the given pair and prompts, or the tiny pair and random word prompts."""
    from hf_specdecpp.training import PromptRecord, read_jsonl_prompts
    from hf_specdecpp.testing import save_tiny_pair, tiny_prompts

    if (args.draft is None) != (args.target is None):
        sys.exit("give both --draft and --target, or neither (tiny pair)")
    if args.draft is None:
        target, draft = save_tiny_pair(args.workdir / "models", noise=0.03, seed=0)
    else:
        target, draft = args.target, args.draft
    if args.prompts is not None:
        return target, draft, read_jsonl_prompts(args.prompts)
    return target, draft, [PromptRecord(prompt=r["prompt"]) for r in tiny_prompts(64, seed=0)]


def train(args, target: str, draft: str, records: list) -> Path:
    """make-data -> train -> calibrate; returns the calibrated head's folder."""
    from hf_specdecpp.training import calibrate_head, make_data, train_head

    data_dir, head_dir = args.workdir / "data", args.workdir / "head"
    print("== make-data: the target answers the prompts; every drafted token gets its acceptance label")
    make_data(data_dir, draft=draft, target=target, records=records, max_new_tokens=args.max_new_tokens,
              dev_fraction=0.25, shard_size=32, batch_size=16, show_progress=False)
    print(f"== train: {args.epochs} epochs on the cached draft hidden states")
    state = train_head(data_dir, head_dir, num_layers=1, epochs=args.epochs, batch_size=8, lr=3e-3,
                       show_progress=False, resume=True)
    print(f"   best epoch {state['best']['epoch']}, dev AUROC of rejection "
          f"{state['best']['metrics'].get('auroc_reject', float('nan')):.3f}")
    print("== calibrate: time the pair on this machine, choose the threshold by simulation")
    result = calibrate_head(head_dir, data_dir, repeats=3, prompt_length=32, plot=False, show_progress=False)
    print(f"   threshold h = {result['threshold']:.2f}, at most {result['max_candidates']} candidates per round, "
          f"cost ratio c = {result['cost_ratio']:.3f}")
    return head_dir


def publish_and_load(args, head_dir: Path):
    """Push the head to the Hub repo and load it back by its repo id (or, with --local-dir, write the upload to a
    folder and load it from there)."""
    from hf_specdecpp import AcceptanceHead
    from hf_specdecpp.training import TrainingError, export_head, push_head

    if args.local_dir is not None:
        print(f"== push --local-dir: what would be uploaded to {args.repo_id}, written to {args.local_dir}")
        source = str(export_head(head_dir, args.local_dir, repo_id=args.repo_id))
    else:
        print(f"== push: {args.repo_id} at {args.endpoint or os.environ.get('HF_ENDPOINT') or 'huggingface.co'}")
        try:
            print("   " + push_head(head_dir, args.repo_id, token=args.token, endpoint=args.endpoint))
        except TrainingError as err:
            sys.exit(f"{err}\nThe head is trained and calibrated in {head_dir}. To finish offline, run again "
                     "with --local-dir DIR (the trained head is reused).")
        source = args.repo_id
    head = AcceptanceHead.from_pretrained(source)
    print(f"== loaded {source}: policy {json.dumps(head.policy.to_dict() if head.policy else None)[:100]}...")
    return head


def generate(args, target_dir: str, draft_dir: str, head) -> bool:
    """Greedy generation with the head and with the target alone; returns whether the outputs are equal."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_specdecpp import SpecDecPPMethod

    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    target = AutoModelForCausalLM.from_pretrained(target_dir).eval()
    draft = AutoModelForCausalLM.from_pretrained(draft_dir).eval()
    prompt = "w12 w40 w41 w77 w30" if args.draft is None else "Write a function that reverses a string."
    inputs = tokenizer(prompt, return_tensors="pt")
    method = SpecDecPPMethod(head=head)
    common = dict(do_sample=False, max_new_tokens=args.max_new_tokens, pad_token_id=tokenizer.pad_token_id)
    fast = target.generate(**inputs, assistant_model=draft, candidate_generator=method, **common)
    alone = target.generate(**inputs, **common)
    print("== SpecDec++: " + tokenizer.decode(fast[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
    print(f"   {method.stats.summary()}")
    same = fast.shape == alone.shape and bool((fast == alone).all())
    print(f"== identical to the target's own greedy output: {same}")
    return same


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    if args.endpoint:  # before huggingface_hub is imported: it reads the endpoint once
        os.environ["HF_ENDPOINT"] = args.endpoint
    args.workdir.mkdir(parents=True, exist_ok=True)
    target, draft, records = prepare_pair(args)
    head_dir = train(args, target, draft, records)
    head = publish_and_load(args, head_dir)
    if not generate(args, target, draft, head):
        sys.exit("the output differs from the target's greedy output")


if __name__ == "__main__":
    main()
