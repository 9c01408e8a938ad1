"""Benchmark harness: every configuration on every prompt, interleaved per prompt, timed with `perf_counter`.

Configurations are given as `{name: config}` where `config` is one of

- `TARGET_ALONE` ("target"): `target.generate()` without a draft (the reference; always run, added if missing);
- `ASSISTED` ("assisted"): transformers' default assisted generation, `assistant_model=draft` only (with
  scikit-learn installed transformers tunes its confidence threshold from an ROC curve during each call);
- `HEURISTIC` ("heuristic"): transformers' `num_assistant_tokens_schedule="heuristic"` with
  `num_assistant_tokens=20` (+2 after a fully accepted round, -1 otherwise; the confidence stopping stays on).
  transformers writes the final `num_assistant_tokens` back into `draft.generation_config` after each call, so
  the runner sets both fields before EVERY call of this config (each prompt starts from 20) and restores the
  draft's original values afterwards;
- an `hf_specdecpp` `DecodingMethod` (SpecDec++, fixed K, entropy stopping, ...), passed as
  `candidate_generator=` with `assistant_model=draft`.

Counting: for the stock configurations forward hooks on the target and on the draft count forward passes (per
call, removed afterwards); for our generators `generator.stats` is used. For greedy decoding every output is
compared token for token with the target-alone output, and an oracle is computed (see `oracle_rounds`).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from .. import DySpecCandidateGenerator, SpecDecPPCandidateGenerator
from ..methods import DecodingMethod
from ..utils.io import diff_settings, read_json, write_json

TARGET_ALONE = "target"
ASSISTED = "assisted"
HEURISTIC = "heuristic"
STOCK = (TARGET_ALONE, ASSISTED, HEURISTIC)
ORACLE = "oracle"
HEURISTIC_START = 20

SUMMARY_COLUMNS = [
    "config", "speedup", "tokens_per_s", "target_fw_per_token", "draft_fw_per_token",
    "mean_accepted_per_round", "mean_candidate_length", "discard_rate", "all_equal", "prompts",
]
RESULT_COLUMNS = [
    "prompt_id", "config", "order", "time_s", "new_tokens", "tokens_per_s", "target_forwards", "draft_forwards",
    "target_fw_per_token", "draft_fw_per_token", "rounds", "drafted_tokens", "accepted_tokens",
    "mean_accepted_per_round", "candidate_lengths", "equal_to_target", "speedup",
]


class ResumeError(ValueError):
    """A benchmark cannot be resumed: no output folder, or the saved run used other settings."""


@dataclass
class Record:
    """One generate() call: `config` on `prompt_id`, `order` = its position within that prompt's rotation."""

    prompt_id: str
    config: str
    order: int
    time_s: float
    new_tokens: int
    target_forwards: int
    draft_forwards: int
    rounds: int | None = None
    drafted_tokens: int | None = None
    accepted_tokens: int | None = None
    candidate_lengths: list[int] = field(default_factory=list)
    equal_to_target: bool | None = None
    speedup: float | None = None  # target-alone time / this time, same prompt
    tokens: list[int] = field(default_factory=list, repr=False)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.time_s if self.time_s > 0 else 0.0

    @property
    def target_fw_per_token(self) -> float:
        return self.target_forwards / self.new_tokens if self.new_tokens else 0.0

    @property
    def draft_fw_per_token(self) -> float:
        return self.draft_forwards / self.new_tokens if self.new_tokens else 0.0

    @property
    def mean_accepted_per_round(self) -> float | None:
        if self.rounds and self.accepted_tokens is not None:
            return self.accepted_tokens / self.rounds
        return None

    def row(self) -> dict:
        out = {k: getattr(self, k) for k in RESULT_COLUMNS}
        out["candidate_lengths"] = " ".join(map(str, self.candidate_lengths))
        return out


@dataclass
class OracleRecord:
    """The greedy oracle on one prompt: rounds that stop exactly at the first draft/target mismatch."""

    prompt_id: str
    new_tokens: int
    rounds: int
    accepted_tokens: int
    accepted_lengths: list[int]
    draft_step_s: float
    target_step_s: float
    verify_s: float
    verify_tokens: int
    estimated_speedup: float

    @property
    def target_fw_per_token(self) -> float:
        return self.rounds / self.new_tokens if self.new_tokens else 0.0

    @property
    def draft_fw_per_token(self) -> float:
        return self.accepted_tokens / self.new_tokens if self.new_tokens else 0.0


@dataclass
class BenchmarkResult:
    records: list[Record]
    oracle: list[OracleRecord]
    summary: list[dict]
    run_order: list[tuple[str, str]]  # (prompt_id, config) in execution order, warm-up excluded
    settings: dict
    paired_with: str | None = None  # the configuration `paired` compares every other one with
    paired: list[dict] = field(default_factory=list)

    def markdown(self) -> str:
        text = summary_markdown(self.summary, self.settings)
        if self.paired:
            text += "\n" + paired_markdown(self.paired, self.paired_with)
        return text


# ---------------------------------------------------------------------------------------------- helpers
def decoding_kwargs(sampling: bool, temperature: float = 0.7) -> dict:
    """Explicit decoding settings, overriding the checkpoints' generation_config (e.g. Qwen's
    repetition_penalty=1.1, top_k=20, top_p=0.8): greedy is plain argmax, sampling is plain temperature sampling."""
    if sampling:
        return dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0, repetition_penalty=1.0)
    return dict(do_sample=False, repetition_penalty=1.0)


class _Counter:
    """Counts forward calls of a module while active."""

    def __init__(self, module: torch.nn.Module):
        self.count = 0
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.count += 1

    def remove(self) -> None:
        self._handle.remove()


def rotation(names: Sequence[str], index: int) -> list[str]:
    """`names` rotated left by `index` (prompt i starts with config i mod n)."""
    names = list(names)
    k = index % len(names) if names else 0
    return names[k:] + names[:k]


def geometric_mean(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def _validate_configs(configs: dict) -> dict:
    out = {}
    for name, config in configs.items():
        if ORACLE == name:
            raise ValueError(f"the configuration name {ORACLE!r} is reserved for the oracle bound")
        if isinstance(config, DecodingMethod) or config in STOCK:
            out[name] = config
        else:
            raise ValueError(
                f"configuration {name!r}: expected one of {STOCK} or an hf_specdecpp candidate generator, "
                f"got {config!r}"
            )
    if TARGET_ALONE not in out.values():
        out = {TARGET_ALONE: TARGET_ALONE, **out}
    return out


def _run_one(target, draft, config, inputs: dict, gen_kwargs: dict, max_new_tokens: int):
    """One timed generate() call; returns (new token ids, seconds, counts dict)."""
    prompt_len = inputs["input_ids"].shape[1]
    kwargs = dict(inputs, max_new_tokens=max_new_tokens, **gen_kwargs)
    counts: dict = {}
    if isinstance(config, DecodingMethod):
        start = time.perf_counter()
        out = target.generate(**kwargs, assistant_model=draft, candidate_generator=config)
        elapsed = time.perf_counter() - start
        s = config.stats  # the statistics of this call (the latest in this thread)
        counts = dict(target_forwards=s.target_forwards, draft_forwards=s.draft_forwards, rounds=s.rounds,
                      drafted_tokens=s.drafted_tokens, accepted_tokens=s.accepted_tokens,
                      candidate_lengths=list(s.candidate_lengths))
    else:
        target_counter = _Counter(target)
        draft_counter = _Counter(draft)
        saved = (draft.generation_config.num_assistant_tokens_schedule,
                 draft.generation_config.num_assistant_tokens)
        try:
            if config == HEURISTIC:
                draft.generation_config.num_assistant_tokens_schedule = "heuristic"
                draft.generation_config.num_assistant_tokens = HEURISTIC_START
            extra = {} if config == TARGET_ALONE else {"assistant_model": draft}
            start = time.perf_counter()
            out = target.generate(**kwargs, **extra)
            elapsed = time.perf_counter() - start
        finally:
            draft.generation_config.num_assistant_tokens_schedule, draft.generation_config.num_assistant_tokens = saved
            target_counter.remove()
            draft_counter.remove()
        counts = dict(target_forwards=target_counter.count, draft_forwards=draft_counter.count)
    tokens = out[0, prompt_len:].tolist()
    if config in (ASSISTED, HEURISTIC):
        # One target pass per round, each round adds accepted + 1 tokens; drafted = draft passes (one token each).
        rounds = counts["target_forwards"]
        counts.update(rounds=rounds, drafted_tokens=counts["draft_forwards"],
                      accepted_tokens=max(len(tokens) - rounds, 0))
    return tokens, elapsed, counts


# ---------------------------------------------------------------------------------------------- the oracle
def oracle_rounds(target_tokens: Sequence[int], draft_predictions: Sequence[int]) -> list[int]:
    """Accepted drafts per round when every round stops exactly at the first draft/target mismatch.

    `draft_predictions[i]` is the draft's greedy token at new position i given the prompt and
    `target_tokens[:i]`. A round starting at position i drafts the run of agreeing tokens i..j-1 (all accepted)
    and the target's verify pass adds token j; the next round starts at j + 1.
    """
    n = len(target_tokens)
    out, i = [], 0
    while i < n:
        j = i
        while j < n and draft_predictions[j] == target_tokens[j]:
            j += 1
        out.append(j - i)
        i = j + 1
    return out


@torch.no_grad()
def _timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def compute_oracle(target, draft, prompt_id: str, input_ids: torch.LongTensor, target_tokens: Sequence[int],
                   repeats: int = 3) -> OracleRecord | None:
    """Greedy oracle for one prompt, with a cost model from step times measured here.

    Draft predictions along the target's output come from one teacher-forced draft pass. Step times (minimum of
    `repeats`, in the middle of the sequence, with KV cache): one draft decode step `t_d`, one target decode
    step `t_t`, and one target verify pass over `L` tokens `t_v(L)` with L = mean oracle round length
    (accepted + 1). Estimated speedup = `N * t_t / (R * t_v(L) + A * t_d)` for N new tokens, R rounds and A
    accepted drafts (prefill ignored: it is the same for both).
    """
    from transformers import DynamicCache

    n = len(target_tokens)
    if n == 0:
        return None
    device = draft.device
    full = torch.cat([input_ids.to(device), torch.tensor([target_tokens], device=device)], dim=1)
    prompt_len = input_ids.shape[1]
    logits = draft(input_ids=full[:, :-1]).logits[0, prompt_len - 1:]
    predictions = logits.argmax(dim=-1).tolist()
    accepted = oracle_rounds(target_tokens, predictions)
    rounds, total_accepted = len(accepted), sum(accepted)
    verify_tokens = max(1, round(n / rounds))

    split = prompt_len + n // 2

    def cached(model, length):
        cache = DynamicCache(config=model.config)
        model(input_ids=full[:, :length].to(model.device), past_key_values=cache, use_cache=True)
        return cache

    def step_time(model, width):
        cache = cached(model, split)
        ids = full[:, split:split + width].to(model.device)
        if ids.shape[1] < width:  # short outputs: reuse the last tokens
            ids = full[:, -width:].to(model.device)

        def run():
            model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=ids.shape[1])
            cache.crop(-ids.shape[1])

        return _timed(run, repeats)

    draft_step = step_time(draft, 1)
    target_step = step_time(target, 1)
    verify = step_time(target, verify_tokens)
    cost = rounds * verify + total_accepted * draft_step
    return OracleRecord(prompt_id, n, rounds, total_accepted, accepted, draft_step, target_step, verify,
                        verify_tokens, n * target_step / cost if cost > 0 else float("nan"))


# ---------------------------------------------------------------------------------------------- the runner
def run_benchmark(
    target,
    draft,
    tokenizer,
    prompts: Sequence,
    configs: dict,
    sampling: bool = False,
    temperature: float = 0.7,
    max_new_tokens: int = 96,
    output_dir: str | Path | None = None,
    warmup: bool = True,
    seed: int = 0,
    oracle: bool = True,
    progress=None,
    resume: bool = False,
    paired_with: str | None = None,
) -> BenchmarkResult:
    """Run every configuration on every prompt, interleaved per prompt (prompt i runs the configurations in the
    order `rotation(names, i)`), and aggregate.

    `prompts`: strings or objects with `.id` and `.text`; the text is tokenized as is (apply the chat template
    before, e.g. with `chat_prompt`). Warm-up: one short untimed call of every configuration on the first prompt
    to run.
    With sampling, the RNG is seeded with `seed + prompt index` before every call. `progress(prompt_id, config,
    record)` is called after each timed call. With `output_dir`, the tables and plots are written there
    (`write_outputs`), and `results.json` after every prompt as a checkpoint.

    `resume=True` continues the run checkpointed in `output_dir`: its records are kept and prompts it already
    holds are skipped (same prompt ids; the settings must match, else `ResumeError`). Each prompt's
    configurations still run interleaved within one sitting, so per-prompt ratios stay paired; `settings["runs"]`
    counts the sittings.

    `paired_with` names the configuration every other one is compared with prompt by prompt (`paired_ratios`);
    default: the first SpecDec++ configuration, if any.
    """
    configs = _validate_configs(configs)
    names = list(configs)
    if paired_with is None:
        paired_with = next((n for n, c in configs.items() if isinstance(c, SpecDecPPCandidateGenerator)), None)
    elif paired_with not in configs:
        raise ValueError(f"paired_with={paired_with!r} is not one of the configurations {names}")
    gen_kwargs = decoding_kwargs(sampling, temperature)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is not None:
        gen_kwargs["pad_token_id"] = pad
    items = [(getattr(p, "id", None) or f"prompt{i}", getattr(p, "text", p)) for i, p in enumerate(prompts)]
    if not items:
        raise ValueError("no prompts to benchmark")

    def encode(text):
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        return {"input_ids": enc["input_ids"].to(target.device),
                "attention_mask": enc["attention_mask"].to(target.device)}

    settings = dict(sampling=sampling, temperature=temperature if sampling else None, max_new_tokens=max_new_tokens,
                    seed=seed, configs={n: describe_config(c) for n, c in configs.items()},
                    order="interleaved per prompt, rotating")
    records: list[Record] = []
    oracles: list[OracleRecord] = []
    run_order: list[tuple[str, str]] = []
    runs = 1
    if resume:
        if output_dir is None:
            raise ResumeError("resume=True needs the output_dir of the run to continue")
        previous = load_checkpoint(Path(output_dir) / "results.json", settings)
        if previous is not None:
            records, oracles, run_order = previous.records, previous.oracle, previous.run_order
            runs = previous.settings.get("runs", 1) + 1
    done = {r.prompt_id for r in records}
    todo = [(i, item) for i, item in enumerate(items) if item[0] not in done]

    def result_so_far() -> BenchmarkResult:
        final = dict(settings, prompts=len({r.prompt_id for r in records}), runs=runs)
        paired = paired_ratios(records, paired_with) if paired_with is not None and records else []
        return BenchmarkResult(records, oracles, summarize(records, oracles, names), run_order, final,
                               paired_with, paired)

    if warmup and todo:
        inputs = encode(todo[0][1][1])
        for name in names:
            torch.manual_seed(seed)
            _run_one(target, draft, configs[name], inputs, gen_kwargs, min(8, max_new_tokens))

    for index, (prompt_id, text) in todo:
        inputs = encode(text)
        by_name: dict[str, Record] = {}
        for order, name in enumerate(rotation(names, index)):
            torch.manual_seed(seed + index)
            tokens, elapsed, counts = _run_one(target, draft, configs[name], inputs, gen_kwargs, max_new_tokens)
            rec = Record(prompt_id, name, order, elapsed, len(tokens), tokens=tokens, **counts)
            by_name[name] = rec
            run_order.append((prompt_id, name))
            if progress is not None:
                progress(prompt_id, name, rec)
        reference = next(by_name[n] for n in names if configs[n] == TARGET_ALONE)
        for name in names:
            rec = by_name[name]
            rec.speedup = reference.time_s / rec.time_s if rec.time_s > 0 else None
            rec.equal_to_target = None if sampling else rec.tokens == reference.tokens
            records.append(rec)
        if oracle and not sampling:
            o = compute_oracle(target, draft, prompt_id, inputs["input_ids"], reference.tokens)
            if o is not None:
                oracles.append(o)
        if output_dir is not None:
            write_checkpoint(result_so_far(), Path(output_dir) / "results.json")

    result = result_so_far()
    if output_dir is not None:
        write_outputs(result, output_dir, configs)
    return result


def write_checkpoint(result: BenchmarkResult, path: Path) -> None:
    """`results.json`: settings, summary, run order, every record (with its tokens) and the oracle records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, dict(settings=result.settings, summary=result.summary, run_order=result.run_order,
                          records=[asdict(r) for r in result.records], oracle=[asdict(o) for o in result.oracle]))


def load_checkpoint(path: Path, settings: dict) -> BenchmarkResult | None:
    """The run saved in `path` (None if there is none), after checking that it was made with `settings`."""
    if not path.exists():
        return None
    saved = read_json(path)
    old = {k: v for k, v in saved["settings"].items() if k not in ("prompts", "runs")}
    diffs = diff_settings(old, json.loads(json.dumps(settings)))
    if diffs:
        raise ResumeError(f"cannot resume the benchmark in {path.parent}: it was run with other settings:\n  "
                         + "\n  ".join(diffs) + "\nUse another output folder, or the same options as that run.")
    return BenchmarkResult([Record(**r) for r in saved["records"]], [OracleRecord(**o) for o in saved["oracle"]],
                           saved["summary"], [tuple(x) for x in saved["run_order"]], saved["settings"])


def describe_config(config) -> str:
    if isinstance(config, str):
        return {TARGET_ALONE: "target alone", ASSISTED: "transformers assisted generation (default)",
                HEURISTIC: f"transformers heuristic schedule (start {HEURISTIC_START})"}[config]
    params = {f.name: getattr(config.config, f.name) for f in fields(config.config)}
    return f"{type(config).__name__}({', '.join(f'{k}={v}' for k, v in params.items())})"


# ---------------------------------------------------------------------------------------------- aggregation
def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarize(records: Sequence[Record], oracles: Sequence[OracleRecord], names: Sequence[str]) -> list[dict]:
    """One row per configuration (in `names` order) plus the oracle row when there is one."""
    rows = []
    for name in names:
        recs = [r for r in records if r.config == name]
        if not recs:
            continue
        drafted = sum(r.drafted_tokens or 0 for r in recs)
        accepted = sum(r.accepted_tokens or 0 for r in recs)
        lengths = [n for r in recs for n in r.candidate_lengths]
        equal = [r.equal_to_target for r in recs]
        rows.append(dict(
            config=name,
            speedup=geometric_mean([r.speedup for r in recs]),
            tokens_per_s=sum(r.new_tokens for r in recs) / sum(r.time_s for r in recs),
            target_fw_per_token=_mean([r.target_fw_per_token for r in recs]),
            draft_fw_per_token=_mean([r.draft_fw_per_token for r in recs]),
            mean_accepted_per_round=_mean([r.mean_accepted_per_round for r in recs]),
            mean_candidate_length=_mean(lengths) if lengths else None,
            discard_rate=(drafted - accepted) / drafted if drafted else None,
            all_equal=None if any(e is None for e in equal) else all(equal),
            prompts=len(recs),
        ))
    if oracles:
        rows.append(dict(
            config=ORACLE,
            speedup=geometric_mean([o.estimated_speedup for o in oracles]),
            tokens_per_s=None,
            target_fw_per_token=_mean([o.target_fw_per_token for o in oracles]),
            draft_fw_per_token=_mean([o.draft_fw_per_token for o in oracles]),
            mean_accepted_per_round=_mean([o.accepted_tokens / o.rounds for o in oracles]),
            mean_candidate_length=_mean([n for o in oracles for n in o.accepted_lengths]),
            discard_rate=0.0,
            all_equal=None,
            prompts=len(oracles),
        ))
    return rows


def paired_ratios(records: Sequence[Record], reference: str) -> list[dict]:
    """Every other configuration against `reference`, prompt by prompt: the ratios time(config) / time(reference)
    on the same prompt (> 1: `reference` was faster), their geometric mean with a 95% Student-t interval (over
    the log ratios), their range, and on how many prompts `reference` was faster.

    The geometric mean equals the ratio of the two configurations' speedups over the same prompts; the interval
    and the win count say whether a difference is larger than the prompt-to-prompt (and run-to-run) noise.
    """
    from scipy import stats

    times: dict[str, dict[str, float]] = {}
    for r in records:
        times.setdefault(r.config, {})[r.prompt_id] = r.time_s
    if reference not in times:
        raise ValueError(f"no records of {reference!r} to compare with")
    base = times[reference]
    rows = []
    for name, by_prompt in times.items():
        if name == reference:
            continue
        logs = [math.log(t / base[p]) for p, t in by_prompt.items() if p in base and t > 0 and base[p] > 0]
        if not logs:
            continue
        n, mean = len(logs), sum(logs) / len(logs)
        half = stats.t.ppf(0.975, n - 1) * statistics.stdev(logs) / math.sqrt(n) if n > 1 else float("nan")
        rows.append(dict(config=name, ratio=math.exp(mean), ci_low=math.exp(mean - half),
                         ci_high=math.exp(mean + half), min=math.exp(min(logs)), max=math.exp(max(logs)),
                         wins=sum(x > 0 for x in logs), prompts=n))
    return rows


def paired_markdown(rows: Sequence[dict], reference: str) -> str:
    lines = [f"Paired with `{reference}`: time of the config / time of `{reference}` on the same prompt "
             f"(geometric mean; > 1: `{reference}` faster).", "",
             f"| config | ratio | 95% CI | range | {reference} faster on |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['ratio']:.3f} | {_fmt(r['ci_low'])}-{_fmt(r['ci_high'])} | "
                     f"{r['min']:.2f}-{r['max']:.2f} | {r['wins']}/{r['prompts']} |")
    return "\n".join(lines) + "\n"


def _fmt(value, digits=3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_markdown(summary: Sequence[dict], settings: dict | None = None) -> str:
    header = ["config", "speedup", "tok/s", "target fw/token", "draft fw/token", "accepted/round",
              "mean cand. len", "discard rate", "= target", "prompts"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in summary:
        speed = f"{row['speedup']:.2f}x" if row["speedup"] == row["speedup"] else "-"
        if row["config"] == ORACLE:
            speed += " (est.)"
        cells = [row["config"], speed, _fmt(row["tokens_per_s"], 1), _fmt(row["target_fw_per_token"]),
                 _fmt(row["draft_fw_per_token"]), _fmt(row["mean_accepted_per_round"], 2),
                 _fmt(row["mean_candidate_length"], 2), _fmt(row["discard_rate"]), _fmt(row["all_equal"]),
                 _fmt(row["prompts"])]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if settings:
        mode = f"sampling T={settings['temperature']}" if settings["sampling"] else "greedy"
        runs = settings.get("runs", 1)
        sittings = f" (collected in {runs} sittings with --resume)" if runs > 1 else ""
        text += (f"\n{settings['prompts']} prompts, {mode}, max_new_tokens={settings['max_new_tokens']}, "
                 f"{settings['order']}{sittings}. Speedup: geometric mean over prompts of target-alone time / config "
                 "time; oracle: rounds stop exactly at the first draft/target mismatch, speedup estimated from "
                 "measured step times.\n")
    return text


def _write_csv(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def write_outputs(result: BenchmarkResult, output_dir: str | Path, configs: dict | None = None) -> dict[str, Path]:
    """Write `summary.md`, `summary.csv`, `results.csv` (one row per call), `oracle.csv`, `results.json`,
    `paired.csv` (when a configuration to pair with is set) and the plots `speedup.png`, `candidate_lengths.png`,
    `tradeoff.png` (and `tree_budgets.png` with DySpec configurations); return their paths by name."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("summary.md", "summary.csv", "results.csv", "oracle.csv",
                                           "results.json", "speedup.png", "candidate_lengths.png", "tradeoff.png")}
    paths["summary.md"].write_text(result.markdown())
    _write_csv(paths["summary.csv"], result.summary, SUMMARY_COLUMNS)
    _write_csv(paths["results.csv"], [r.row() for r in result.records], RESULT_COLUMNS)
    if result.paired:
        paths["paired.csv"] = out / "paired.csv"
        _write_csv(paths["paired.csv"], [dict(r, reference=result.paired_with) for r in result.paired],
                   ["reference", *result.paired[0]])
    oracle_rows = [{k: v for k, v in asdict(o).items() if k != "accepted_lengths"} | dict(
        target_fw_per_token=o.target_fw_per_token) for o in result.oracle]
    oracle_cols = ["prompt_id", "new_tokens", "rounds", "accepted_tokens", "target_fw_per_token", "draft_step_s",
                   "target_step_s", "verify_s", "verify_tokens", "estimated_speedup"]
    _write_csv(paths["oracle.csv"], oracle_rows, oracle_cols)
    write_checkpoint(result, paths["results.json"])
    specdec = [n for n, c in (configs or {}).items() if isinstance(c, SpecDecPPCandidateGenerator)]
    _plots(result, paths, specdec)
    trees = {n: c for n, c in (configs or {}).items() if isinstance(c, DySpecCandidateGenerator)}
    if trees:
        paths["tree_budgets.png"] = out / "tree_budgets.png"
        references = {n for n, c in configs.items() if c == TARGET_ALONE} | {TARGET_ALONE, ORACLE}
        _tree_budget_plot(result, trees, references, paths["tree_budgets.png"])
    return paths


def _tree_budget_plot(result: BenchmarkResult, trees: dict, references: set[str], path: Path) -> None:
    """Speedup against tree budget, one line per tree variant (draft-guided / head-guided), chains as lines;
    `references` (target alone, oracle) are not chains."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = {r["config"]: r for r in result.summary}
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, with_head in (("DySpec (draft probabilities)", False), ("DySpec + acceptance head", True)):
        points = sorted((c.budget, summary[n]["speedup"]) for n, c in trees.items()
                        if (c.head is not None) == with_head and n in summary)
        if points:
            ax.plot([b for b, _ in points], [v for _, v in points], "o-", label=variant)
    chains = [r for r in result.summary if r["config"] not in trees and r["config"] not in references
              and r["speedup"] == r["speedup"]]
    for r in sorted(chains, key=lambda r: -r["speedup"])[:3]:
        ax.axhline(r["speedup"], ls="--", lw=0.8, color="tab:gray")
        ax.annotate(r["config"], (ax.get_xlim()[0], r["speedup"]), fontsize=7, color="tab:gray")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tree budget (drafted nodes per round)")
    ax.set_ylabel("speedup over target alone (geo. mean)")
    ax.set_title("Draft trees: speedup by budget (dashed: best chain methods)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plots(result: BenchmarkResult, paths: dict, specdec_names: Sequence[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.summary if r["speedup"] == r["speedup"]]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows) + 2), 4))
    colors = ["tab:gray" if r["config"] == ORACLE else "tab:blue" for r in rows]
    ax.bar([r["config"] for r in rows], [r["speedup"] for r in rows], color=colors)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_ylabel("speedup over target alone (geo. mean)")
    ax.set_title("Speedup by method (oracle: cost-model estimate)")
    ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    fig.savefig(paths["speedup.png"], dpi=100)
    plt.close(fig)

    by_config: dict[str, list[int]] = {}
    for r in result.records:
        if r.candidate_lengths:
            by_config.setdefault(r.config, []).extend(r.candidate_lengths)
    fig, ax = plt.subplots(figsize=(7, 4))
    if by_config:
        top = max(max(v) for v in by_config.values())
        bins = [x - 0.5 for x in range(0, top + 2)]
        for name, lengths in by_config.items():
            ax.hist(lengths, bins=bins, histtype="step", label=name, density=True)
        ax.legend(fontsize=7)
    ax.set_xlabel("candidates per round")
    ax.set_ylabel("fraction of rounds")
    ax.set_title("Candidate lengths (hf_specdecpp generators)")
    fig.tight_layout()
    fig.savefig(paths["candidate_lengths.png"], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    summary = {r["config"]: r for r in result.summary}
    sweep = [summary[n] for n in specdec_names if n in summary and summary[n]["discard_rate"] is not None]
    if sweep:
        sweep.sort(key=lambda r: r["target_fw_per_token"])
        ax.plot([r["target_fw_per_token"] for r in sweep], [r["discard_rate"] for r in sweep], "o-",
                label="SpecDec++ threshold sweep")
        for r in sweep:
            ax.annotate(r["config"], (r["target_fw_per_token"], r["discard_rate"]), fontsize=7)
    others = [r for r in result.summary if r["config"] not in specdec_names and r["discard_rate"] is not None]
    for r in others:
        marker = "*" if r["config"] == ORACLE else "x"
        ax.plot(r["target_fw_per_token"], r["discard_rate"], marker, color="tab:gray")
        ax.annotate(r["config"], (r["target_fw_per_token"], r["discard_rate"]), fontsize=7, color="tab:gray")
    ax.set_xlabel("verification rate (target forwards / token)")
    ax.set_ylabel("discard rate (rejected drafts / drafted)")
    ax.set_title("Discard vs verification trade-off")
    if sweep:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths["tradeoff.png"], dpi=100)
    plt.close(fig)
