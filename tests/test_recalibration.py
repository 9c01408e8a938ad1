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


def cpu_curve(draft, c: float = 0.3, slope: float = 0.1) -> CostCurve:
    """A plausible curve for the device `draft` runs on, under which the synthetic traces pay."""
    return curve({k: 1.0 + slope * k for k in (0, 1, 2, 3, 4, 6, 8, 12, 16, 20)}, c=c, device=DeviceKind.of(draft))


NOISY = {0: 1.0, 1: 1.3, 2: 1.6, 3: 2.0, 4: 2.2, 6: 2.69, 8: 1.9, 12: 1.20, 16: 1.18, 20: 1.15}
"""The busy machine's curve of issue 23/25: v(6) 2.69, v(12) 1.20, v(20) 1.15."""


@pytest.fixture
def timings(monkeypatch):
    """Replace the timing of the two models with given curves (the last one repeats); record every call.

    Real timings of tiny models on a shared CPU are noise: the tests decide what was measured."""
    calls: list[CostCurve] = []
    queue: list = []

    def fake(draft, target, **kwargs):
        made = queue[min(len(calls), len(queue) - 1)]
        calls.append(made(draft) if callable(made) else made)
        return calls[-1]

    monkeypatch.setattr(calibration, "measure_costs", fake)
    queue.append(cpu_curve)
    return queue, calls


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


def test_policy_for_device_measures_once_then_reads_its_cache(tmp_path, timings):
    target, draft = tiny_pair()
    head = head_with(None, synthetic_traces())
    _, measured = timings

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
    with pytest.warns(UserWarning, match="Ignoring the cached policy .*not valid JSON"):
        again = policy_for_device(head, draft, target, repeats=1)
    assert len(measured) == 2 and again.measured_on == first.measured_on
    assert json.loads(files[0].read_text())["threshold"] == pytest.approx(again.threshold)

    other = head_with(None, synthetic_traces(seed=1))  # another head (other traces): its own entry
    policy_for_device(other, draft, target, repeats=1)
    assert len(measured) == 3 and len(list((tmp_path / "cache" / "policies").rglob("*.json"))) == 2


def test_recalibrate_auto_in_generate_is_exact_and_uses_the_device_policy(timings):
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


def test_recalibrate_cli_writes_a_device_tagged_policy_and_keeps_the_original(tmp_path, timings):
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
    assert '"seconds":' in result.output and '"measurements": 1' in result.output  # how long it took
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


def test_the_benchmark_runs_the_head_as_users_get_it_and_replays_it_exactly(timings):
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


# ------------------------------------------------------------------ a cache that cannot be written or trusted
def _read_only(monkeypatch):
    """A read-only mount: every rename into the cache fails with EROFS (root ignores chmod, so patch the call)."""
    import errno
    import os

    from hf_specdecpp.utils import io

    def refuse(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))

    monkeypatch.setattr(io.os, "replace", refuse)


@pytest.mark.parametrize("obstacle", ["cache-is-a-file", "policies-is-a-file", "directory-in-the-way", "read-only"])
def test_an_unwritable_policy_cache_warns_and_generate_goes_on(tmp_path, monkeypatch, timings, obstacle):
    """Issue 23.5: NotADirectoryError, IsADirectoryError and EROFS cost a warning naming the path, never the call,
    and leave no temporary file behind."""
    torch.manual_seed(0)
    target, draft = tiny_pair()
    head = head_with(HeadPolicy(threshold=0.4, max_candidates=2, cost_ratio=0.3, measured_on=GPU_BF16),
                     synthetic_traces())
    cache = tmp_path / "cache"
    entry = calibration.policy_cache_dir() / calibration.head_fingerprint(head) / (
        f"{DeviceKind.of(draft).key()}__{DeviceKind.of(target).key()}.json")
    if obstacle == "cache-is-a-file":
        cache.write_text("not a folder")
    elif obstacle == "policies-is-a-file":
        cache.mkdir()
        (cache / "policies").write_text("not a folder")
    elif obstacle == "directory-in-the-way":
        entry.mkdir(parents=True)
    else:
        _read_only(monkeypatch)
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    generator = SpecDecPPCandidateGenerator(head=head, recalibrate="auto")
    with pytest.warns(UserWarning, match=r"Cannot write the policy cache .*policies.*kept in memory") as record:
        out = target.generate(ids, attention_mask=torch.ones_like(ids), assistant_model=draft,
                              candidate_generator=generator, max_new_tokens=12, do_sample=False)
    assert str(entry) in str(record[0].message)
    assert torch.equal(out, target.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                            do_sample=False))
    resolved = generator.resolve_policy(draft, target)  # the measured policy, from memory
    assert resolved.calibrated_here and len(timings[1]) == 1
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("poison", [{"max_candidates": 10**9}, {"threshold": 1e-300},
                                    {"verify_costs": [1.0, float("nan"), 1.2]},
                                    {"verify_costs": [1.0, -1.1, 1.2]}, {"cost_ratio": float("inf")}])
def test_a_poisoned_policy_cache_is_measured_again_with_a_warning(tmp_path, timings, poison):
    target, draft = tiny_pair()
    head = head_with(None, synthetic_traces())
    first = policy_for_device(head, draft, target)
    [path] = (tmp_path / "cache" / "policies").rglob("*.json")
    data = json.loads(path.read_text()) | poison
    path.write_text(json.dumps(data))  # NaN is written as the JSON extension NaN, which Python reads back
    calibration._MEMORY.clear()
    name = next(iter(poison))
    with pytest.warns(UserWarning, match=rf"Ignoring the cached policy {path}: {name}"):
        again = policy_for_device(head, draft, target)
    assert again == first and len(timings[1]) == 2
    assert json.loads(path.read_text())["max_candidates"] == first.max_candidates  # the cache is repaired


def test_an_implausible_head_policy_is_not_used_silently():
    target, draft = tiny_pair()
    head = head_with(HeadPolicy(threshold=1e-300, max_candidates=10**9, cost_ratio=0.3, measured_on=None))
    with pytest.warns(UserWarning, match=r"threshold 1e-300.*max_candidates 1000000000.*h=0.7 and cap 20"):
        resolved = SpecDecPPCandidateGenerator(head=head).resolve_policy(draft, target)
    assert (resolved.threshold, resolved.max_candidates) == (0.7, 20)


# ------------------------------------------------------------------ noisy or losing re-calibrations
def test_curve_problems_names_noise_and_impossible_timings():
    assert calibration.curve_problems(curve({k: 1.0 + 0.1 * k for k in (0, 1, 2, 4, 8)})) == []
    assert calibration.curve_problems(curve({0: 1.0, 1: 0.97, 2: 0.93, 4: 1.1})) == []  # flat within noise
    [noisy] = calibration.curve_problems(curve(NOISY))
    assert "v(12) = 1.20 below v(6) = 2.69" in noisy and "v(20) = 1.15" in noisy
    assert "v(8) = 1.90" in noisy  # 1.9 < 0.85 * 2.69 as well
    broken = CostCurve(float("nan"), 0.01, {0: 0.01, 1: -0.02})
    assert "not positive numbers" in calibration.curve_problems(broken)[0]


def test_a_noisy_recalibration_is_refused_and_the_shipped_policy_used(timings, capsys):
    """Issue 25.4: a non-monotone curve is measured again, then refused; nothing is cached, the shipped policy
    (threshold and cap) is used with a warning, and the time taken is said."""
    queue, calls = timings
    target, draft = tiny_pair()
    queue[:] = [lambda d: curve(NOISY, device=DeviceKind.of(d))]
    shipped = HeadPolicy(threshold=0.45, max_candidates=6, cost_ratio=0.2, measured_on=GPU_BF16)
    head = head_with(shipped, synthetic_traces())
    generator = SpecDecPPCandidateGenerator(head=head, recalibrate="auto")
    with pytest.warns(UserWarning, match=r"re-calibration refused in \d+ s \(2 measurements\).*v\(12\) = 1.20.*"
                                         r"Nothing was cached; using the head's shipped policy \(threshold 0.45, "
                                         r"max_candidates 6\)"):
        resolved = generator.resolve_policy(draft, target)
    assert (resolved.threshold, resolved.max_candidates, resolved.calibrated_here) == (0.45, 6, False)
    assert len(calls) == 2 and not (calibration.policy_cache_dir()).exists()
    assert "re-calibration refused in" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the refusal is remembered for the process: no second timing, one warning
        assert generator.resolve_policy(draft, target) == resolved
    assert len(calls) == 2


def test_a_policy_predicted_slower_than_the_target_is_never_cached(timings):
    """The busy Quickstart's policy: cost ratio 0.84 and steep verification costs, a predicted speed-up < 1."""
    queue, calls = timings
    target, draft = tiny_pair()
    queue[:] = [lambda d: cpu_curve(d, c=0.84, slope=0.5)]
    result = calibration.recalibrate(head_with(None, synthetic_traces()), draft, target, progress=False)
    assert result.policy is None and result.attempts == 2 and len(calls) == 2
    assert "predicted to run at 0." in result.problems[0] and "cost_ratio 0.84" in result.problems[0]
    with pytest.warns(UserWarning, match="re-calibration refused.*the default policy"):
        assert policy_for_device(head_with(None, synthetic_traces()), draft, target) is None
    assert not calibration.policy_cache_dir().exists()


def test_a_noisy_first_measurement_is_repeated_and_the_second_used(timings, capsys):
    queue, calls = timings
    target, draft = tiny_pair()
    queue[:] = [lambda d: curve(NOISY, device=DeviceKind.of(d)), cpu_curve]
    result = calibration.recalibrate(head_with(None, synthetic_traces()), draft, target)
    assert result.policy is not None and result.attempts == 2 and result.problems == []
    assert result.policy.simulation["speedup"] > 1.0
    err = capsys.readouterr().err
    assert "re-calibrated in" in err and "(2 measurements)" in err and "predicted speed-up" in err


def test_recalibrate_cli_refuses_a_noisy_measurement_and_keeps_the_head(tmp_path, timings):
    queue, _ = timings
    queue[:] = [lambda d: curve(NOISY, device=DeviceKind.of(d))]
    target, draft = save_tiny_pair(tmp_path / "models")
    head_dir = tmp_path / "head"
    head_with(HeadPolicy(threshold=0.4, max_candidates=3, cost_ratio=0.3, measured_on=GPU_BF16),
              synthetic_traces()).save_pretrained(head_dir)
    before = {p.name: p.read_bytes() for p in head_dir.iterdir()}
    result = CliRunner().invoke(app, ["recalibrate", str(head_dir), "--draft", draft, "--target", target,
                                      "--device", "cpu", "--dtype", "float32", "--repeats", "1"])
    assert result.exit_code != 0 and "re-calibration refused" in result.output
    assert "left as it is" in result.output
    assert {p.name: p.read_bytes() for p in head_dir.iterdir()} == before
