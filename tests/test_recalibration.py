"""Device-aware policies: a policy measured on another kind of device is not trusted (one warning, default cap),
re-calibration from the head's shipped dev traces (library, automatic per-device cache, CLI)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hf_specdecpp import SpecDecPPCandidateGenerator
from hf_specdecpp.cli import app
from hf_specdecpp.core.costs import CostCurve
from hf_specdecpp.core.device import DeviceKind
from hf_specdecpp.head import AcceptanceHead, HeadPolicy
from hf_specdecpp.methods.specdecpp import calibration
from hf_specdecpp.methods.specdecpp.calibration import pack_traces, policy_for_device, policy_from_costs
from hf_specdecpp.testing import save_tiny_pair, tiny_head, tiny_pair
from hf_specdecpp.utils.warnings import reset_warnings

GPU_BF16 = DeviceKind("cuda", "NVIDIA H100 80GB HBM3", "bfloat16")


def synthetic_traces(n_responses: int = 12, length: int = 80, seed: int = 0) -> dict[str, torch.Tensor]:
    """Dev traces of a well-calibrated head on a mostly-accepting pair: labels drawn from the predictions."""
    rng = np.random.default_rng(seed)
    preds, labels = [], []
    for _ in range(n_responses):
        p = np.clip(rng.beta(8, 1, size=length), 0.02, 0.999)
        preds.append(p)
        labels.append((rng.random(length) < p).astype(np.float64))
    return pack_traces(preds, labels, greedy=True)


def head_with(policy: HeadPolicy | None, traces: dict | None = None) -> AcceptanceHead:
    head = tiny_head()
    head.policy = policy
    head.traces = traces
    return head


def curve(verify_costs: dict[int, float], c: float = 0.3, device: DeviceKind | None = None) -> CostCurve:
    step = 0.01
    return CostCurve(c * step, step, {k: v * step for k, v in verify_costs.items()},
                     device=vars(device) if device else {}, prompt_length=16, repeats=1)


@pytest.fixture(autouse=True)
def fresh_state(tmp_path, monkeypatch):
    """Each test starts with no issued warnings and an empty policy cache of its own."""
    monkeypatch.setenv("HF_SPECDECPP_CACHE", str(tmp_path / "cache"))
    calibration._MEMORY.clear()
    reset_warnings()
    yield
    calibration._MEMORY.clear()


def test_a_policy_from_another_device_warns_once_and_drops_its_cap():
    target, draft = tiny_pair()
    policy = HeadPolicy(threshold=0.4, max_candidates=3, cost_ratio=0.3, measured_on=GPU_BF16)
    generator = SpecDecPPCandidateGenerator(head=head_with(policy))
    with pytest.warns(UserWarning, match=r"calibrated on cuda \(NVIDIA H100.*recalibrate") as record:
        resolved = generator.resolve_policy(draft, target)
        generator.resolve_policy(draft, target)
    assert len([w for w in record if "calibrated on" in str(w.message)]) == 1
    assert resolved.threshold == pytest.approx(0.4) and not resolved.calibrated_here
    assert resolved.max_candidates == 20  # the default cap, not the other machine's 3


def test_a_policy_measured_here_or_given_costs_is_trusted_silently():
    target, draft = tiny_pair()
    here = HeadPolicy(threshold=0.4, max_candidates=3, cost_ratio=0.3, measured_on=DeviceKind.of(draft))
    given = HeadPolicy(threshold=0.5, max_candidates=5, cost_ratio=0.3, measured_on=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = SpecDecPPCandidateGenerator(head=head_with(here)).resolve_policy(draft, target)
        b = SpecDecPPCandidateGenerator(head=head_with(given)).resolve_policy(draft, target)
    assert (a.threshold, a.max_candidates, a.calibrated_here) == (pytest.approx(0.4), 3, True)
    assert (b.threshold, b.max_candidates, b.calibrated_here) == (pytest.approx(0.5), 5, True)


def test_explicit_threshold_and_cap_silence_the_device_warning():
    target, draft = tiny_pair()
    policy = HeadPolicy(threshold=0.4, max_candidates=3, cost_ratio=0.3, measured_on=GPU_BF16)
    generator = SpecDecPPCandidateGenerator(head=head_with(policy), threshold=0.6, max_candidates=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolved = generator.resolve_policy(draft, target)
    assert (resolved.threshold, resolved.max_candidates) == (pytest.approx(0.6), 7)


def test_flat_verify_costs_choose_longer_rounds_than_steep_ones():
    """The same traces re-simulated under GPU-like (v(K) ~ 1) and CPU-like (v grows fast) costs."""
    head = head_with(None, synthetic_traces())
    flat = policy_from_costs(head, curve({k: 1.0 + 0.01 * k for k in range(0, 21)}, device=GPU_BF16))
    steep = policy_from_costs(head, curve({k: 1.0 + 0.5 * k for k in range(0, 21)}))
    assert flat.max_candidates > steep.max_candidates
    assert flat.simulation["speedup"] > steep.simulation["speedup"] > 1.0
    assert flat.measured_on == GPU_BF16 and steep.measured_on is None
    assert flat.verify_costs[1] == pytest.approx(1.01) and flat.cost_ratio == pytest.approx(0.3)


def test_recalibration_needs_traces():
    with pytest.raises(ValueError, match="ships no dev traces"):
        policy_from_costs(head_with(None), curve({0: 1.0, 1: 1.1}))
    with pytest.raises(ValueError, match="recalibrate='auto'.*dev traces"):
        SpecDecPPCandidateGenerator(head=head_with(None), recalibrate="auto")


def test_policy_for_device_measures_once_then_reads_its_cache(tmp_path, monkeypatch):
    target, draft = tiny_pair()
    head = head_with(None, synthetic_traces())
    measured = []
    real = calibration.measure_costs
    monkeypatch.setattr(calibration, "measure_costs", lambda *a, **k: measured.append(1) or real(*a, **k))

    first = policy_for_device(head, draft, target, repeats=1)
    assert len(measured) == 1 and first.measured_on == DeviceKind.of(draft)
    files = list((tmp_path / "cache" / "policies").rglob("*.json"))
    assert len(files) == 1 and DeviceKind.of(draft).key() in files[0].name

    assert policy_for_device(head, draft, target) is first  # in memory
    calibration._MEMORY.clear()
    assert policy_for_device(head, draft, target) == first  # from disk, a new process would do the same
    assert len(measured) == 1

    files[0].write_text("{not json")  # a damaged cache entry is measured again, not trusted
    calibration._MEMORY.clear()
    again = policy_for_device(head, draft, target, repeats=1)
    assert len(measured) == 2 and again.measured_on == first.measured_on
    assert json.loads(files[0].read_text())["threshold"] == pytest.approx(again.threshold)

    other = head_with(None, synthetic_traces(seed=1))  # another head (other traces): its own entry
    policy_for_device(other, draft, target, repeats=1)
    assert len(measured) == 3 and len(list((tmp_path / "cache" / "policies").rglob("*.json"))) == 2


def test_recalibrate_auto_in_generate_is_exact_and_uses_the_device_policy():
    torch.manual_seed(0)
    target, draft = tiny_pair()
    policy = HeadPolicy(threshold=0.4, max_candidates=2, cost_ratio=0.3, measured_on=GPU_BF16)
    head = head_with(policy, synthetic_traces())
    generator = SpecDecPPCandidateGenerator(head=head, recalibrate="auto")
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no device warning: the policy is re-calibrated instead
        out = target.generate(ids, attention_mask=torch.ones_like(ids), assistant_model=draft,
                              candidate_generator=generator, max_new_tokens=24, do_sample=False)
    ref = target.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False)
    assert torch.equal(out, ref)
    resolved = generator.resolve_policy(draft, target)
    cached = policy_for_device(head, draft, target)
    assert resolved.calibrated_here and resolved.max_candidates == cached.max_candidates
    assert resolved.threshold == pytest.approx(cached.threshold)
    assert head.policy is policy  # the user's head keeps its own policy


def test_recalibrate_cli_writes_a_device_tagged_policy_and_keeps_the_original(tmp_path):
    target, draft = save_tiny_pair(tmp_path / "models")
    original = tmp_path / "head"
    head_with(HeadPolicy(threshold=0.4, max_candidates=3, cost_ratio=0.3, measured_on=GPU_BF16),
              synthetic_traces()).save_pretrained(original)
    before = {p.name: p.read_bytes() for p in original.iterdir()}
    out = tmp_path / "head-here"
    args = ["recalibrate", str(original), "--draft", draft, "--target", target, "--device", "cpu",
            "--dtype", "float32", "--repeats", "1", "--max-candidates", "8", "--output-dir", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in original.iterdir()} == before
    new = AcceptanceHead.from_pretrained(out)
    assert new.policy.measured_on.device_type == "cpu" and new.policy.measured_on.dtype == "float32"
    assert 1 <= new.policy.max_candidates <= 8 and new.traces is not None
    assert torch.equal(new.traces["pred"], AcceptanceHead.from_pretrained(original).traces["pred"])

    in_place = CliRunner().invoke(app, args[:-2])
    assert in_place.exit_code == 0, in_place.output
    assert AcceptanceHead.from_pretrained(original).policy.measured_on.device_type == "cpu"
    previous = json.loads((original / "policy.previous.json").read_text())
    assert previous["measured_on"]["device_type"] == "cuda"  # the replaced policy is kept beside it


def test_recalibrate_cli_names_bad_input(tmp_path):
    target, draft = save_tiny_pair(tmp_path / "models")
    head_dir = tmp_path / "head"
    head_with(None).save_pretrained(head_dir)
    result = CliRunner().invoke(app, ["recalibrate", str(head_dir), "--draft", draft, "--target", target,
                                      "--device", "cpu", "--dtype", "float32", "--repeats", "1"])
    assert result.exit_code != 0 and "ships no dev traces" in result.output
    result = CliRunner().invoke(app, ["recalibrate", "someone/remote-head", "--draft", draft, "--target", target])
    assert result.exit_code != 0 and "--output-dir" in result.output
    result = CliRunner().invoke(app, ["recalibrate", str(head_dir), "--draft", draft, "--target", target,
                                      "--dtype", "float8"])
    assert result.exit_code != 0 and "--dtype" in result.output


def test_the_benchmark_runs_the_head_as_users_get_it_and_replays_it_exactly():
    """`specdec++-auto` (the shipped policy re-calibrated here) is benchmarked when the head has traces, and the
    exact mode's replay of it makes the real call's rounds and forward passes."""
    from hf_specdecpp.bench.calls import PassCounter, decoding_kwargs
    from hf_specdecpp.bench.configs import SPECDEC_AUTO, build_configs
    from hf_specdecpp.bench.exact.configs import policy_for
    from hf_specdecpp.bench.exact.recorder import record_trace
    from hf_specdecpp.bench.exact.replay import replay

    try:
        from .helpers import producing_head
    except ImportError:
        from helpers import producing_head
    target, draft = tiny_pair("llama", noise=0.2, seed=4)
    head = producing_head(draft.config.hidden_size)
    assert SPECDEC_AUTO not in build_configs([], [0.5], [], head=head)  # no traces: nothing to re-calibrate
    head.traces = synthetic_traces()
    method = build_configs([], [0.5], [], head=head)[SPECDEC_AUTO]
    greedy = dict(decoding_kwargs(False), pad_token_id=0)
    ids = torch.randint(6, 96, (1, 7), generator=torch.Generator().manual_seed(1))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    trace = record_trace(target, draft, "p", inputs, 24, greedy)
    assert method.resolve_policy(draft, target).calibrated_here  # first use: timing passes, then cached
    counters = (PassCounter(target), PassCounter(draft))
    try:
        out = target.generate(**inputs, max_new_tokens=24, assistant_model=draft, candidate_generator=method,
                              **greedy)
    finally:
        for counter in counters:
            counter.remove()
    assert out[0, 7:].tolist() == trace.target_tokens
    got = replay(trace, policy_for(method, target, draft))
    assert got.candidate_lengths == method.stats.candidate_lengths
    assert (got.target_forwards, got.draft_forwards) == (counters[0].count, counters[1].count)


def test_recalibrate_auto_keeps_a_policy_measured_on_this_kind_of_device(monkeypatch):
    """No timing when the policy was measured here: a re-timing on a busy machine could only make it worse."""
    target, draft = tiny_pair()
    here = DeviceKind.of(draft)
    head = head_with(HeadPolicy(threshold=0.35, max_candidates=5, cost_ratio=0.3, measured_on=here),
                     synthetic_traces())

    def no_timing(*args, **kwargs):
        raise AssertionError("re-timed a policy measured on this kind of device")

    monkeypatch.setattr(calibration, "policy_for_device", no_timing)
    resolved = SpecDecPPCandidateGenerator(head=head, recalibrate="auto").resolve_policy(draft, target)
    assert (resolved.threshold, resolved.max_candidates, resolved.calibrated_here) == (0.35, 5, True)
    head.policy = HeadPolicy(threshold=0.35, max_candidates=5, cost_ratio=0.3, measured_on=GPU_BF16)
    with pytest.raises(AssertionError, match="re-timed"):  # measured elsewhere: re-calibrated
        SpecDecPPCandidateGenerator(head=head, recalibrate="auto").resolve_policy(draft, target)
