"""Does the cost per generated token stay flat as sequences grow? Time per token against output and prompt length.

    python benchmarks/scaling.py --out DIR                       # the real pair (fetched when needed)
        [--output-lengths 128,512,1024,2048] [--prompt-lengths 128,512,1024,2048,4096] [--batch-sizes 1,4]
        [--base-prompt 128] [--base-output 128] [--configs target,assisted,specdec++,tree] [--dtype bfloat16]
        [--device cuda] [--count] [--batch-output-limit N] [--batch-prompt-limit N]
    python benchmarks/scaling.py --tiny --out DIR                # tiny random models, seconds (the CI smoke run)

Two sweeps, greedy, EOS disabled so that every call generates exactly the requested tokens: the output length at a
`--base-prompt`-token prompt, and the prompt length at `--base-output` new tokens, for batch sizes `--batch-sizes`.
Configurations: the target alone (`generate()`), transformers' assisted generation (`assistant_model=`, batch 1
only: transformers decodes one sequence), SpecDec++ chains (`custom_generate=`, the shipped head) and a DySpec
tree (budget `--tree-budget`, one sequence per call). Prompts: the HumanEval and MT-Bench prompts (chat template)
concatenated and cut to the length, a different offset per row (random token ids with `--tiny`).

Per configuration and length it records the decode time per generated token (per step at batch > 1), without the
prefill: a stopping criterion of its own (`LengthClock`, never stopping) notes when each length is reached. The
output sweep is one call to the longest `--output-lengths` read in stretches between the asked lengths (flat means
per-round work does not grow with the output); the prompt sweep one call per prompt length. It also records the
work counts per call: rounds, target and draft forward passes (ms per round in the prompt table), and with `--count`
(always with `--tiny`) the host synchronisations and staged copies per round counted in a separate untimed call
(`hf_specdecpp.bench.syncs`). `--batch-output-limit` / `--batch-prompt-limit` shorten the grid at batch > 1. Writes
DIR/scaling.json, DIR/scaling.md (the table) and DIR/scaling.png (the curves).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hf_specdecpp import DySpecMethod, SpecDecPPMethod
from hf_specdecpp.bench.machine import machine_info, machine_line
from hf_specdecpp.bench.syncs import SyncCounter
from hf_specdecpp.utils.timing import synchronize, timed
from transformers import StoppingCriteria, StoppingCriteriaList

CONFIGS = ("target", "assisted", "specdec++", "tree")
ONE_SEQUENCE = ("assisted", "tree")


@dataclass
class Point:
    """One measurement: configuration, batch, sweep ("output" or "prompt"), lengths, time and work counts."""

    config: str
    batch: int
    sweep: str
    prompt_tokens: int
    new_tokens: int
    seconds: float
    ms_per_token: float
    rounds: int | None = None
    target_forwards: int | None = None
    draft_forwards: int | None = None
    syncs_per_round: float | None = None
    staged_per_round: float | None = None
    prefill_seconds: float | None = None
    decode_ms_per_token: float | None = None


class LengthClock(StoppingCriteria):
    """Never stops; notes when each sequence length is first reached (seconds since the call began).

    generate() asks its stopping criteria after every token (the target alone), after every round (assisted
    generation) or token by token after every round (this package's loops), so the marks give the decode time of
    any stretch of the output without the prefill, from one call.
    """

    def __init__(self, device, prompt_tokens: int):
        self.device, self.prompt_tokens, self.start, self.marks = device, prompt_tokens, None, []

    def begin(self) -> None:
        self.start, self.marks = time.perf_counter(), []

    def __call__(self, input_ids, scores, **kwargs):
        new = input_ids.shape[1] - self.prompt_tokens
        if not self.marks or new > self.marks[-1][0]:
            synchronize(self.device)
            self.marks.append((new, time.perf_counter() - self.start))
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def ms_per_token(self, low: int, high: int) -> tuple[float, int] | None:
        """(ms per token, tokens) from the first mark at or past `low` new tokens to the first at or past `high`."""
        after = lambda n: next((m for m in self.marks if m[0] >= n), None)
        first, last = after(max(low, self.marks[0][0])), after(high) or self.marks[-1]
        if first is None or last[0] <= first[0]:
            return None
        return 1000.0 * (last[1] - first[1]) / (last[0] - first[0]), last[0] - first[0]


def token_stream(args, tokenizer, vocab_size: int) -> list[int]:
    """A long stream of token ids the prompts are cut from."""
    longest = max(args.prompt_lengths + [args.base_prompt]) * (max(args.batch_sizes) + 1)
    if args.tiny:
        generator = torch.Generator().manual_seed(0)
        return torch.randint(2, vocab_size, (longest,), generator=generator).tolist()
    from hf_specdecpp.bench.models import real_prompts

    sets = real_prompts("both", None, tokenizer)
    ids: list[int] = []
    while len(ids) < longest:
        for pair in zip(sets["humaneval"], sets["mtbench"]):
            for prompt in pair:
                ids += tokenizer(prompt.text, add_special_tokens=False)["input_ids"]
    return ids


def prompts(stream: list[int], batch: int, length: int, device) -> torch.LongTensor:
    """`batch` prompts of `length` tokens, row b starting `b * length` tokens into the stream."""
    rows = [stream[b * length: (b + 1) * length] for b in range(batch)]
    return torch.tensor(rows, dtype=torch.long, device=device)


def method_kwargs(config: str, draft, head, tree_budget: int) -> dict:
    """generate() arguments that select `config` (a fresh method object per call)."""
    if config == "target":
        return {}
    if config == "assisted":
        return {"assistant_model": draft}
    if config == "specdec++":
        return {"custom_generate": SpecDecPPMethod(head=head, draft_model=draft)}
    return {"custom_generate": DySpecMethod(budget=tree_budget, draft_model=draft)}


def run_one(target, draft, head, config: str, ids: torch.LongTensor, new_tokens: int, args,
            clock: LengthClock | None = None) -> tuple[float, dict]:
    """(seconds, work counts) of one greedy call generating exactly `new_tokens` per row.

    The counts include the prefill time (to the first mark) and the decode ms per token after it, read from
    `clock` (a fresh one when not given; pass one to read other stretches of the output from its marks).
    """
    kwargs = method_kwargs(config, draft, head, args.tree_budget)
    clock = clock or LengthClock(ids.device, ids.shape[1])
    call = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                min_new_tokens=None, do_sample=False, eos_token_id=None, pad_token_id=0,
                return_dict_in_generate=True, stopping_criteria=StoppingCriteriaList([clock]), **kwargs)
    clock.begin()
    out, seconds = timed(lambda: target.generate(**call), target)
    decode = clock.ms_per_token(0, new_tokens)
    counts: dict = {"prefill_seconds": clock.marks[0][1], "decode_ms_per_token": decode[0] if decode else None}
    stats = getattr(out, "speculation_stats", None)
    if stats is not None:
        counts.update(rounds=stats.rounds, target_forwards=stats.target_forwards, draft_forwards=stats.draft_forwards)
    elif config == "target":
        counts.update(rounds=new_tokens, target_forwards=new_tokens, draft_forwards=0)
    else:  # transformers' assisted generation asks the criteria once per round: a mark per round
        counts.update(rounds=len(clock.marks))
    if (args.count or args.tiny) and config not in ("target", "assisted") and stats is not None:
        counter = SyncCounter()
        with counter:
            counted = target.generate(**dict(call, stopping_criteria=None,
                                             **method_kwargs(config, draft, head, args.tree_budget)))
        rounds = max(counted.speculation_stats.rounds, 1)
        summary = counter.summary()
        counts.update(syncs_per_round=summary["syncs"] / rounds, staged_per_round=summary["staged"] / rounds)
    return seconds, counts


def sweep(target, draft, head, stream, args) -> list[Point]:
    """Both sweeps, configurations interleaved at every point (so that machine load hits them alike).

    The output sweep is one call per configuration to the longest output length, read in stretches between the
    lengths asked for (decode ms per token within each stretch: flat means no per-round work grows with the
    output); the prompt sweep is one call per prompt length (decode ms per token after the prefill).
    """
    device = next(p.device for p in target.parameters() if p.device.type != "meta")
    plan = [("output", args.base_prompt, max(args.output_lengths))]
    plan += [("prompt", p, args.base_output) for p in args.prompt_lengths]
    points = []
    for batch in args.batch_sizes:
        for kind, prompt_tokens, new_tokens in plan:
            if kind == "output" and batch > 1 and args.batch_output_limit:
                new_tokens = min(new_tokens, args.batch_output_limit)
            if kind == "prompt" and batch > 1 and args.batch_prompt_limit and prompt_tokens > args.batch_prompt_limit:
                continue
            ids = prompts(stream, batch, prompt_tokens, device)
            for config in args.configs:
                if batch > 1 and config in ONE_SEQUENCE:
                    continue
                clock = LengthClock(device, prompt_tokens)
                seconds, counts = run_one(target, draft, head, config, ids, new_tokens, args, clock)
                for point in points_of(kind, config, batch, prompt_tokens, new_tokens, seconds, counts, clock, args):
                    points.append(point)
                    print(json.dumps(asdict(point)), flush=True)
    return points


def points_of(kind, config, batch, prompt_tokens, new_tokens, seconds, counts, clock, args) -> list[Point]:
    """One point per call (prompt sweep) or per stretch of the output between the asked lengths (output sweep)."""
    if kind == "prompt":
        return [Point(config, batch, kind, prompt_tokens, new_tokens, seconds, counts["decode_ms_per_token"],
                      **counts)]
    points, low = [], 0
    for high in sorted(n for n in args.output_lengths if n <= new_tokens):
        stretch = clock.ms_per_token(low, high)
        if stretch is not None:
            points.append(Point(config, batch, kind, prompt_tokens, high, stretch[0] * stretch[1] / 1000.0,
                                stretch[0], **dict(counts, decode_ms_per_token=stretch[0])))
        low = high
    return points


def markdown(points: list[Point], machine: str, command: str) -> str:
    """The table: ms per generated token per configuration and batch, one column per length of each sweep."""
    lines = [f"Machine: {machine}", "", f"Command: `{command}`", ""]
    for kind, label in (("output", "new tokens (prompt {p})"), ("prompt", "prompt tokens ({n} new tokens)")):
        chosen = [p for p in points if p.sweep == kind]
        if not chosen:
            continue
        lengths = sorted({p.new_tokens if kind == "output" else p.prompt_tokens for p in chosen})
        title = label.format(p=chosen[0].prompt_tokens, n=chosen[0].new_tokens)
        lines += [f"ms per generated token against {title}:", "",
                  "| config | batch | " + " | ".join(map(str, lengths)) + " | syncs / round | staged / round |",
                  "|---|---|" + "---|" * len(lengths) + "---|---|"]
        for config, batch in dict.fromkeys((p.config, p.batch) for p in chosen):
            row = {p.new_tokens if kind == "output" else p.prompt_tokens: p for p in chosen
                   if (p.config, p.batch) == (config, batch)}
            cells = [f"{row[n].ms_per_token:.1f}" if n in row else "" for n in lengths]
            syncs = sorted({round(p.syncs_per_round, 1) for p in row.values() if p.syncs_per_round is not None})
            staged = sorted({round(p.staged_per_round, 1) for p in row.values() if p.staged_per_round is not None})
            span = lambda values: (f"{values[0]:g}" if len(values) == 1 else f"{values[0]:g}-{values[-1]:g}") \
                if values else ""
            lines.append(f"| {config} | {batch} | " + " | ".join(cells) + f" | {span(syncs)} | {span(staged)} |")
        lines.append("")
        if kind == "prompt":
            lines += per_round_table(chosen, lengths)
    return "\n".join(lines)


def ms_per_round(point: Point) -> float | None:
    """Decode time per round after the first (a target step for the target alone): the work per round, which
    does not depend on how many tokens the prompt's content lets a round accept. For prompt-sweep points only
    (their seconds are the whole call's; an output-sweep point's are one stretch's)."""
    if point.rounds is None or point.rounds < 2 or point.prefill_seconds is None:
        return None
    return 1000.0 * (point.seconds - point.prefill_seconds) / (point.rounds - 1)


def per_round_table(points: list[Point], lengths: list[int]) -> list[str]:
    """The prompt sweep as ms per round and tokens per round (acceptance varies with the prompt's content)."""
    lines = ["ms per round after the first (tokens per round) against prompt tokens:", "",
             "| config | batch | " + " | ".join(map(str, lengths)) + " |", "|---|---|" + "---|" * len(lengths)]
    for config, batch in dict.fromkeys((p.config, p.batch) for p in points):
        row = {p.prompt_tokens: p for p in points if (p.config, p.batch) == (config, batch)}
        cells = []
        for n in lengths:
            value = ms_per_round(row[n]) if n in row else None
            cells.append(f"{value:.0f} ({row[n].new_tokens / row[n].rounds:.1f})" if value is not None else "")
        lines.append(f"| {config} | {batch} | " + " | ".join(cells) + " |")
    return lines + [""]


def plot(points: list[Point], path: Path) -> None:
    """Two panels: ms per token against the output length and against the prompt length (log-scaled x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, kind, xlabel in ((axes[0], "output", "new tokens"), (axes[1], "prompt", "prompt tokens")):
        chosen = [p for p in points if p.sweep == kind]
        for config, batch in dict.fromkeys((p.config, p.batch) for p in chosen):
            row = sorted((p for p in chosen if (p.config, p.batch) == (config, batch)),
                         key=lambda p: p.new_tokens if kind == "output" else p.prompt_tokens)
            xs = [p.new_tokens if kind == "output" else p.prompt_tokens for p in row]
            ax.plot(xs, [p.ms_per_token for p in row], marker="o", label=f"{config}, batch {batch}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ms per generated token")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def setup(args):
    """(target, draft, head, tokenizer): the tiny stand-ins or the real pair with its shipped greedy head."""
    if args.tiny:
        from hf_specdecpp.testing import tiny_head, tiny_pair

        target, draft = tiny_pair(noise=0.05)
        return target, draft, tiny_head(), None
    from hf_specdecpp import load_shipped_head
    from hf_specdecpp.assets import load_pair
    from hf_specdecpp.head.shipped import default_head_name

    target, draft, tokenizer = load_pair(dtype=getattr(torch, args.dtype), device=args.device)
    return target, draft, load_shipped_head(default_head_name(False)), tokenizer


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda text: [int(x) for x in text.split(",") if x]
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true", help="tiny random models and short lengths (seconds)")
    parser.add_argument("--output-lengths", type=ints, default=None)
    parser.add_argument("--prompt-lengths", type=ints, default=None)
    parser.add_argument("--batch-sizes", type=ints, default=None)
    parser.add_argument("--base-prompt", type=int, default=None, help="prompt tokens of the output sweep")
    parser.add_argument("--base-output", type=int, default=None, help="new tokens of the prompt sweep")
    parser.add_argument("--configs", type=lambda t: [c for c in t.split(",") if c], default=list(CONFIGS))
    parser.add_argument("--tree-budget", type=int, default=16)
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--count", action="store_true", help="also count syncs per round (an extra untimed call)")
    parser.add_argument("--batch-output-limit", type=int, default=None,
                        help="longest output of the output sweep at batch sizes above 1 (default: no limit)")
    parser.add_argument("--batch-prompt-limit", type=int, default=None,
                        help="longest prompt of the prompt sweep at batch sizes above 1 (default: no limit)")
    args = parser.parse_args(argv)
    small = {"output_lengths": [8, 16, 32], "prompt_lengths": [8, 16, 32], "batch_sizes": [1, 2],
             "base_prompt": 8, "base_output": 8}
    full = {"output_lengths": [128, 512, 1024, 2048], "prompt_lengths": [128, 512, 1024, 2048, 4096],
            "batch_sizes": [1, 4], "base_prompt": 128, "base_output": 128}
    for name, value in (small if args.tiny else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    unknown = set(args.configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configurations {sorted(unknown)}; choose from {list(CONFIGS)}")
    return args


def main(argv: list[str] | None = None) -> list[Point]:
    args = parse(argv)
    target, draft, head, tokenizer = setup(args)
    vocab = target.config.get_text_config().vocab_size
    points = sweep(target, draft, head, token_stream(args, tokenizer, vocab), args)
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine_info(target)
    command = "python benchmarks/scaling.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.out / "scaling.json").write_text(json.dumps({"machine": info, "command": command,
                                                       "points": [asdict(p) for p in points]}, indent=1))
    (args.out / "scaling.md").write_text(markdown(points, machine_line(info), command))
    plot(points, args.out / "scaling.png")
    return points


if __name__ == "__main__":
    main()
