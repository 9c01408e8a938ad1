"""make-data across processes (`accelerate launch -m hf_specdecpp.cli make-data`): two CPU processes write the same
shards as one process, and a run killed mid-way resumes to the same data set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hf_specdecpp.training import load_features
from hf_specdecpp.training.data_folder import read_manifest

from helpers import training_workspace

pytest.importorskip("accelerate")
pytestmark = pytest.mark.slow  # two processes loading torch: tens of seconds

OPTIONS = dict(max_new_tokens=12, shard_size=4, batch_size=4, dev_fraction=0.25, dtype="float32")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("processes")
    target, draft, prompts = training_workspace(root)
    ws = {"root": root, "target": target, "draft": draft, "prompts": prompts, "reference": root / "one-process"}
    run = launch(ws, ws["reference"], processes=1)  # the same command in one process, the same thread count
    output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, output[-3000:]
    return ws


def launch(ws, out: Path, processes: int = 2, module: str = "hf_specdecpp.cli") -> subprocess.Popen:
    """The make-data command in one process, or under `accelerate launch` as the README says (on CPUs too:
    torchrun underneath); one thread per process, so that float32 sums add up in the same order. `module`
    `stalled_make_data` is the same command with processes that stop after their first shard."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                     "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                     "--main_process_port", str(29500 + os.getpid() % 1000)]
    command = [*launcher, "-m", module, "make-data", str(out), "--draft", str(ws["draft"]), "--target",
               str(ws["target"]), "--prompts", str(ws["prompts"])]
    for key, value in OPTIONS.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    here = Path(__file__).resolve().parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(here.parent), str(here)])}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def assert_same_data(folder: Path, reference: Path) -> None:
    ours, theirs = read_manifest(folder), read_manifest(reference)
    assert ours["complete"] and ours["totals"] == theirs["totals"]
    assert sorted(ours["shards"]) == sorted(theirs["shards"])
    for split in ("train", "dev"):
        a, b = load_features(folder, split), load_features(reference, split)
        assert a.column_names == b.column_names and len(a) == len(b)
        for column in a.column_names:
            assert a[column] == b[column], (split, column)
    assert not list(folder.glob("progress.rank*.json"))  # merged into the manifest


def test_two_processes_write_the_same_data_as_one(ws, tmp_path):
    out = tmp_path / "two-processes"
    run = launch(ws, out)
    output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, output[-3000:]
    assert_same_data(out, ws["reference"])


def test_a_killed_run_resumes_to_the_same_data(ws, tmp_path):
    out = tmp_path / "killed"
    run = launch(ws, out, module="stalled_make_data")  # each process stops after its first shard
    deadline = time.monotonic() + 600
    while not all((out / f"progress.rank{rank}.json").exists() for rank in (0, 1)):
        assert run.poll() is None, "make-data ended before it recorded a shard in each process:\n" + run.stdout.read()
        assert time.monotonic() < deadline, "no shard recorded in 10 minutes"
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    assert not read_manifest(out)["complete"]
    done = [json.loads((out / f"progress.rank{rank}.json").read_text())["shards"] for rank in (0, 1)]
    assert [sorted(d) for d in done] == [["0"], ["1"]]  # what the resumed run keeps
    resumed = launch(ws, out)
    output, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, output[-3000:]
    assert_same_data(out, ws["reference"])
