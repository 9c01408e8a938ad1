"""The benchmark's exact mode: replayed counts equal real generate() calls, token for token and round by round.

Every policy is replayed on traces recorded once per prompt and compared with the real call on tiny float32
models: our methods through generate() (their per-call statistics and forward hooks), transformers' default
assisted generation and its heuristic schedule through forward hooks and the per-round candidate/accepted counts
its candidate generator sees. No wall-clock assertions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers.generation.candidate_generator import AssistedCandidateGenerator

import hf_specdecpp  # noqa: F401  (installs candidate_generator=)
from hf_specdecpp.bench.calls import PassCounter, decoding_kwargs, run_call
from hf_specdecpp.bench.configs import ASSISTED, HEURISTIC, HEURISTIC_START, TARGET_ALONE, build_configs
from hf_specdecpp.bench.exact.configs import policy_for
from hf_specdecpp.bench.exact.costs import cost_units
from hf_specdecpp.bench.exact.policies import Confidence, FixedK, GammaTune, Oracle, SpecDecPP, TransformersAssisted
from hf_specdecpp.bench.exact.recorder import record_trace
from hf_specdecpp.bench.exact.records import ExactRecord
from hf_specdecpp.bench.exact.replay import replay
from hf_specdecpp.bench.exact.traces import Branch, PromptTrace, Steps
from hf_specdecpp.core.costs import CostCurve
from hf_specdecpp.methods import registry
from hf_specdecpp.testing import tiny_pair

try:
    from .helpers import producing_head, random_head
except ImportError:
    from helpers import producing_head, random_head

NEW_TOKENS = 24
GREEDY = dict(decoding_kwargs(False), pad_token_id=0)


def _inputs(seed: int, length: int) -> dict:
    ids = torch.randint(6, 96, (1, length), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.fixture(scope="module")
def pair():
    return tiny_pair("llama", noise=0.2, seed=4)


@pytest.fixture(scope="module")
def cases(pair):
    """(inputs, trace) for three prompts (from 8 to 24 mismatches in 24 tokens) and one prompt whose output ends
    at an early EOS (a token of its plain output made EOS for both models)."""
    target, draft = pair
    out = []
    for seed in range(3):
        inputs = _inputs(seed, 5 + seed)
        out.append((inputs, record_trace(target, draft, f"p{seed}", inputs, NEW_TOKENS, GREEDY), None))
    inputs = _inputs(3, 6)
    plain = record_trace(target, draft, "plain", inputs, NEW_TOKENS, GREEDY).target_tokens
    eos = plain[NEW_TOKENS // 2]
    out.append((inputs, record_trace(target, draft, "eos", inputs, NEW_TOKENS, dict(GREEDY, eos_token_id=eos),
                                     eos=[eos]), eos))
    assert out[-1][1].new_tokens <= NEW_TOKENS // 2 + 1 and out[-1][1].target_tokens[-1] == eos
    return out


def _methods(draft) -> dict:
    lagged, producing = random_head(draft.config.hidden_size), producing_head(draft.config.hidden_size)
    methods = {f"fixed-K{k}": registry.build("fixed-k", num_candidates=k) for k in (1, 3, 5)}
    methods["entropy-0.3"] = registry.build("entropy", lam=0.3, max_candidates=6)
    methods["top1-0.6"] = registry.build("entropy", lam=0.6, estimator="top1", max_candidates=6)
    methods["entropy-0.5-min2"] = registry.build("entropy", lam=0.5, min_candidates=2, max_candidates=6)
    for cap, costs in ((6, {}), (12, dict(cost_ratio=0.2, verify_costs=(1.0, 1.01, 1.02)))):  # assumed, given
        methods[f"top1-cost-aware-cap{cap}"] = registry.build("entropy", estimator="top1", stop_rule="cost-aware",
                                                              max_candidates=cap, **costs)
    for h in (0.77, 0.79):  # these tiny drafts are nearly uniform: sqrt(0.15 H) lies close to 0.78
        methods[f"svip-{h}"] = registry.build("entropy", lam=h, estimator="svip", max_candidates=6)
    methods["gammatune"] = registry.build("gammatune", max_candidates=6)
    methods["gammatune-slow"] = registry.build("gammatune", initial=6.0, smoothing=0.3, min_candidates=2,
                                               max_candidates=8)
    for name, head in (("lagged", lagged), ("producing", producing)):
        for h, cap in ((0.2, 3), (0.5, 8), (0.8, 20)):
            methods[f"specdec-{name}-h{h}-cap{cap}"] = registry.build("specdec++", head=head, threshold=h,
                                                                      max_candidates=cap)
        for cap in (4, 12):  # the cost-aware rule (assumed costs: these heads have no policy)
            methods[f"cost-aware-{name}-cap{cap}"] = registry.build("specdec++", head=head, stop_rule="cost-aware",
                                                                    max_candidates=cap)
    return methods


def _with_eos(eos):
    return GREEDY if eos is None else dict(GREEDY, eos_token_id=eos)


def test_replay_equals_generate_for_our_methods(pair, cases):
    """Fixed K, the entropy, top-1 and SVIP rules, GammaTune and SpecDec++ (both head input states, several h and caps): the
    replayed per-round candidate and accepted counts and both models' forward passes equal the real call's."""
    target, draft = pair
    methods = _methods(draft)
    for inputs, trace, eos in cases:
        for name, method in methods.items():
            counters = (PassCounter(target), PassCounter(draft))
            try:
                out = target.generate(**inputs, max_new_tokens=NEW_TOKENS, assistant_model=draft,
                                      candidate_generator=method, **_with_eos(eos))
            finally:
                for counter in counters:
                    counter.remove()
            stats = method.stats
            assert out[0, inputs["input_ids"].shape[1]:].tolist() == trace.target_tokens, name
            got = replay(trace, policy_for(method, target, draft))
            where = f"{name} on {trace.prompt_id}"
            assert got.candidate_lengths == stats.candidate_lengths, where
            assert got.accepted_lengths == stats.accepted_lengths, where
            assert (got.target_forwards, got.draft_forwards) == (counters[0].count, counters[1].count), where
            assert (got.target_forwards, got.draft_forwards) == (stats.target_forwards, stats.draft_forwards), where


def _stock_call(target, draft, inputs, config, eos):
    """The real call with the per-round candidate counts and accepted counts transformers' generator sees."""
    seen = {"candidates": [], "accepted": [], "thresholds": []}
    get, update = AssistedCandidateGenerator.get_candidates, AssistedCandidateGenerator.update_candidate_strategy

    def get_candidates(self, input_ids, **kwargs):
        ids, logits = get(self, input_ids, **kwargs)
        seen["candidates"].append(ids.shape[1] - input_ids.shape[1])
        return ids, logits

    def update_candidate_strategy(self, input_ids, scores, num_matches):
        seen["accepted"].append(int(num_matches))
        update(self, input_ids, scores, num_matches)
        seen["thresholds"].append(float(self.assistant_generation_config.assistant_confidence_threshold))

    AssistedCandidateGenerator.get_candidates = get_candidates
    AssistedCandidateGenerator.update_candidate_strategy = update_candidate_strategy
    try:
        counts, _ = run_call(target, draft, config, inputs, _with_eos(eos), NEW_TOKENS)
    finally:
        AssistedCandidateGenerator.get_candidates, AssistedCandidateGenerator.update_candidate_strategy = get, update
    return counts, seen


class _Watched(TransformersAssisted):
    """The transformers policy, noting the confidence threshold after every round."""

    def end_round(self, state, drafted, accepted):
        super().end_round(state, drafted, accepted)
        self.thresholds.append(float(state.threshold))


@pytest.mark.parametrize("roc", [True, False])
@pytest.mark.parametrize("config", [ASSISTED, HEURISTIC])
def test_replay_equals_transformers_assisted_generation(pair, cases, config, roc, monkeypatch):
    """transformers' default (confidence 0.4, ROC-tuned online when scikit-learn is installed, fixed without it)
    and heuristic schedule: per round candidates, accepted counts and the threshold, and the forward passes the
    hooks count."""
    import transformers.generation.candidate_generator as candidate_generator

    target, draft = pair
    if not roc:
        monkeypatch.setattr(candidate_generator, "is_sklearn_available", lambda: False)
    elif not candidate_generator.is_sklearn_available():
        pytest.skip("scikit-learn is not installed: transformers does not tune the threshold")
    tuned = False
    for inputs, trace, eos in cases:
        counts, seen = _stock_call(target, draft, inputs, config, eos)
        assert counts.tokens == trace.target_tokens
        base = policy_for(config, target, draft)
        policy = _Watched(base.threshold, base.start_tokens, base.schedule, roc)
        policy.thresholds = []
        got = replay(trace, policy)
        where = f"{config} on {trace.prompt_id}"
        assert got.candidate_lengths == seen["candidates"] == counts.candidate_lengths, where
        assert got.accepted_lengths == seen["accepted"] == counts.accepted_lengths, where
        assert policy.thresholds == pytest.approx(seen["thresholds"]), where
        assert (got.target_forwards, got.draft_forwards) == (counts.target_forwards, counts.draft_forwards), where
        tuned |= any(t != 0.4 for t in seen["thresholds"])
    assert tuned == roc  # the online ROC tuning was exercised, and only with scikit-learn
    assert (draft.generation_config.num_assistant_tokens_schedule, draft.generation_config.num_assistant_tokens) \
        != ("heuristic", HEURISTIC_START + 2)  # run_call restored the draft's settings


def _hand_trace() -> PromptTrace:
    """y = 10..15 (6 new tokens, the length limit); the draft agrees except at positions 2 and 4; EOS 99; the
    branch after position 2 drafts 99 (EOS)."""
    def steps(tokens, top1):
        n = len(tokens)
        return Steps(list(tokens), torch.tensor(top1), torch.zeros(n), torch.zeros(n, 3), torch.zeros(n, 2))

    path = steps([10, 11, 40, 13, 41, 15], [0.9, 0.9, 0.3, 0.9, 0.2, 0.9])
    trace = PromptTrace("hand", 3, 6, frozenset([99]), [10, 11, 12, 13, 14, 15], path)
    trace.branches = {2: Branch(steps([99], [0.8]), ended=True),
                      4: Branch(steps([60], [0.7]), ended=True)}
    return trace


def test_replay_by_hand():
    """Fixed K = 3: positions 0-2 accept 2 (+12); from 3 room for 2 (6 - 3 - 1), accept 1 (+14); at 5 no room."""
    trace = _hand_trace()
    assert trace.mismatches == [2, 4] and trace.agree_run(0) == 2 and trace.agree_run(3) == 1
    fixed = replay(trace, FixedK(3))
    assert fixed.candidate_lengths == [3, 2, 0] and fixed.accepted_lengths == [2, 1, 0]
    # K = 5 from 0: 10, 11, 40 (mismatch), then the branch's EOS ends the round after 4 candidates
    assert replay(trace, FixedK(5)).candidate_lengths[0] == 4
    # confidence 0.5: stops after the first token below it (40 at 0.3 -> 3 candidates)
    assert replay(trace, Confidence(0.5, estimator="top1")).candidate_lengths[0] == 3
    oracle = replay(trace, Oracle())
    assert oracle.candidate_lengths == [2, 1, 0] and oracle.accepted_lengths == [2, 1, 0]
    assert oracle.new_tokens == sum(oracle.accepted_lengths) + oracle.rounds


def test_gammatune_policy_by_hand():
    """gamma 3 -> K 3: drafts 3, keeps 2 -> gamma 0.5 * 3 + 0.5 * 2 = 2.5 -> K 3 (half up); from 3 room for 2, keeps
    1; at 5 no room. A fully accepted round moves gamma towards drafted + 1, a round without drafting not at all."""
    trace = _hand_trace()
    got = replay(trace, GammaTune(initial=3.0, smoothing=0.5))
    assert got.candidate_lengths == [3, 2, 0] and got.accepted_lengths == [2, 1, 0]
    policy = GammaTune(initial=4.0, smoothing=0.5, min_candidates=2, max_candidates=5)
    state = policy.start_call()
    policy.end_round(state, 4, 4)  # all accepted: towards 5 -> 4.5 -> K 5
    assert state.value == 4.5 and policy.cap(state) == 5
    policy.end_round(state, 5, 5)  # towards 6 -> 5.25, capped at 5
    assert policy.cap(state) == 5
    policy.end_round(state, 5, 0)  # towards 0 -> 2.625 -> K 3
    assert state.value == 2.625 and policy.cap(state) == 3
    policy.end_round(state, 3, 0)  # 1.3125 -> K 1, raised to min_candidates
    assert policy.cap(state) == 2
    policy.end_round(state, 0, 0)  # nothing drafted: no change
    assert state.value == 1.3125


def test_gammatune_rule_and_policy_agree():
    """The method's per-call rule and the replay policy move K identically over any rounds (one row here)."""
    method = registry.build("gammatune", initial=3.0, smoothing=0.3, max_candidates=7)
    rule, policy = method.new_rule(None), policy_for(method, None, None)
    state = policy.start_call()
    rounds = torch.randint(0, 8, (40, 2), generator=torch.Generator().manual_seed(0)).tolist()
    for drafted, accepted in rounds:
        accepted = min(accepted, drafted)
        rule.start_round(1)
        caps = [step + 1 for step in range(8) if rule(torch.zeros(1, 1), None, step=step).item()]
        assert caps[0] == policy.cap(state)
        rule.end_round([drafted], [accepted])
        policy.end_round(state, drafted, accepted)
    assert rule.gammas == [state.value]


def test_peer_configs_for_the_bench():
    """`--svip-hs` and `--gammatune` give SVIP (the entropy method, estimator svip, lam = h) and GammaTune, and
    the exact mode replays both."""
    configs = build_configs([], [], [], svip_hs=[0.3, 0.5], gammatune=True, max_candidates=9)
    assert {"svip-h0.3", "svip-h0.5", "gammatune"} <= set(configs)
    svip = configs["svip-h0.3"].config
    assert (svip.estimator, svip.lam, svip.gamma, svip.max_candidates) == ("svip", 0.3, 0.15, 9)
    assert isinstance(policy_for(configs["svip-h0.3"], None, None), Confidence)
    tune = policy_for(configs["gammatune"], None, None)
    assert isinstance(tune, GammaTune) and tune.max_candidates == 9
    assert "gammatune" not in build_configs([], [], [])


def test_only_selects_configurations_by_name(tmp_path):
    """`--only` keeps the named configurations and the target alone; an unknown name is one clear error that lists
    the names the options build."""
    from typer.testing import CliRunner

    from hf_specdecpp.bench.configs import ConfigSelectionError, select_configs
    from hf_specdecpp.cli import app

    configs = build_configs([2, 4], [], [0.3], svip_hs=[0.3])
    assert list(select_configs(configs, ["svip-h0.3", "fixed-K4"])) == ["target", "fixed-K4", "svip-h0.3"]
    with pytest.raises(ConfigSelectionError, match="'fixed-K3'.*fixed-K2, fixed-K4"):
        select_configs(configs, ["fixed-K4", "fixed-K3"])
    base = ["bench", "--exact", "--tiny", "--subset", "1", "--fixed-k", "2,4", "--thresholds", "0.5",
            "--max-new-tokens", "8", "--cost-repeats", "1"]
    res = CliRunner().invoke(app, base + ["--only", "fixed-K4", "--output-dir", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "a" / "tiny" / "exact.json").read_text())
    assert {r["config"] for r in saved["records"]} == {"target", "fixed-K4", "oracle"}
    res = CliRunner().invoke(app, base + ["--only", "fixed-K3", "--output-dir", str(tmp_path / "b")])
    assert res.exit_code == 1 and "--only names no configuration 'fixed-K3'" in res.output
    assert "Traceback" not in res.output


def test_specdecpp_policy_lag_by_hand():
    """A drafted-token head's first token is never scored; a producing-state head's is."""
    class Constant(torch.nn.Module):
        def __init__(self, p, lagged):
            super().__init__()
            self.p, self.scores_without_lag, self.use_confidence_features = p, not lagged, False
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, hidden, features=None):
            return torch.full(hidden.shape[:-1], self.p)

    trace = _hand_trace()
    # P(reject) after t scored tokens = 1 - 0.8^t: 0.2, 0.36, 0.488 -> h = 0.3 stops at the 2nd scored token
    assert replay(trace, FixedK(1)).rounds == 4
    assert replay(trace, SpecDecPP(Constant(0.8, lagged=False), 0.3, 1, 20)).candidate_lengths[0] == 2
    assert replay(trace, SpecDecPP(Constant(0.8, lagged=True), 0.3, 1, 20)).candidate_lengths[0] == 3


def test_cost_units():
    costs = CostCurve(0.4, 1.0, {0: 1.0, 4: 1.2, 8: 2.0})
    chain = ExactRecord("p", "c", "replay", 10, 3, 8, [4, 4, 0], [3, 2, 0])
    assert cost_units(chain, costs) == pytest.approx(2 * (4 * 0.4 + 1.2) + 1.0)
    assert chain.speedup is None
    chain.units = cost_units(chain, costs)
    assert chain.speedup == pytest.approx(10 / chain.units)
    assert cost_units(ExactRecord("p", "target", "replay", 10, 10, 0), costs) == 10
    tree = ExactRecord("p", "tree", "counted", 10, 2, 5, [8, 8], [3, 5], tree_sizes=[8, 8])
    assert cost_units(tree, costs) == pytest.approx(5 * 0.4 + 2 * 2.0)
    assert cost_units(chain, costs, head_overhead=0.1) == pytest.approx(2 * (4 * 0.44 + 1.2) + 1.0)
    assert math.isclose(costs.table(12)[12], 2.0 + costs.verify_slope * 4)


def test_exact_cli_tiny_smoke(tmp_path):
    """`bench --exact --tiny`: tables, plots, machine, validation on a subset, and resume of a finished run."""
    from typer.testing import CliRunner

    from hf_specdecpp.cli import app

    args = ["bench", "--exact", "--tiny", "--subset", "2", "--fixed-k", "2,4", "--thresholds", "0.3,0.6",
            "--tree-budgets", "2", "--max-new-tokens", "12", "--validate", "1", "--cost-repeats", "1",
            "--reference", "fixed-K2", "--output-dir", str(tmp_path)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    folder = tmp_path / "tiny"
    for name in ("exact.md", "exact.csv", "exact_records.csv", "exact.json", "costs.json", "speedup.png",
                 "pareto.png", "validation/validation.md", "validation/summary.md"):
        assert (folder / name).stat().st_size > 0, name
    table = (folder / "exact.md").read_text()
    assert "| oracle |" in table and "| specdec++-h0.3 |" in table and "| dyspec-B2 |" in table
    assert "Machine: CPU" in table and "float32" in table and "Cost curve:" in table
    assert "Trace recording:" in table and "Validation" in table
    assert "its real counts equal the replay on 2 of 2 prompts" in table
    assert "pay its measured overhead" in table
    assert json.loads((tmp_path / "costs.json").read_text())["costs"]["target_step_s"] > 0
    saved = json.loads((folder / "exact.json").read_text())
    assert set(saved["prompt_info"]) == {"tiny/0", "tiny/1"}
    trees = [r for r in saved["records"] if r["config"] == "dyspec-B2"]
    assert trees and all(r["equal_to_target"] and r["tree_sizes"] for r in trees)
    assert all(r["equal_to_target"] for r in saved["records"])
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "paired_exact.py"
    paired = subprocess.run([sys.executable, str(script), str(tmp_path), "specdec++-h0.3", "--out",
                             str(tmp_path / "paired.md")], capture_output=True, text=True, timeout=300)
    assert paired.returncode == 0, paired.stderr[-2000:]
    rows = [line for line in (tmp_path / "paired.md").read_text().splitlines() if line.startswith("| fixed-K2 |")]
    assert len(rows) == 1 and rows[0].endswith("/2 |")  # one row per other configuration, over both prompts
    again = CliRunner().invoke(app, [*args[:-2], "--resume", "--output-dir", str(tmp_path)])
    assert again.exit_code == 0, again.output
    assert json.loads((folder / "exact.json").read_text())["settings"]["runs"] == 2
    other = CliRunner().invoke(app, [*args[:-2], "--resume", "--max-new-tokens", "10", "--output-dir", str(tmp_path)])
    assert other.exit_code == 1 and "cannot resume" in other.output


def test_exact_sampling_counts_every_seed(pair):
    """Sampling: counted real calls, once per seed; stock calls get per-round counts from the target passes."""
    from hf_specdecpp.bench.exact.run import ExactOptions, run_exact
    from hf_specdecpp.testing import tiny_tokenizer

    target, draft = pair
    configs = {"target": TARGET_ALONE, "hf": ASSISTED, "k3": registry.build("fixed-k", num_candidates=3)}
    costs = CostCurve(0.3, 1.0, {0: 1.0, 8: 1.4})
    result = run_exact(target, draft, tiny_tokenizer(), ["w10 w11 w12", "w20 w21"], configs,
                       ExactOptions(max_new_tokens=10, sampling=True, seeds=(0, 1, 2), costs=costs))
    assert len(result.records) == 2 * 3 * 3 and {r.seed for r in result.records} == {0, 1, 2}
    for r in result.records:
        assert r.source == "counted" and r.units is not None
        if r.config != "target":
            assert r.new_tokens == r.accepted_tokens + r.rounds and r.draft_forwards == r.drafted_tokens
    rows = {row["config"]: row for row in result.summary}
    assert rows["target"]["speedup"] == pytest.approx(1.0) and rows["k3"]["calls"] == 6


class _Interrupt(Exception):
    pass


def test_exact_run_resumes_after_an_interruption(pair, tmp_path):
    """A run stopped after its first prompt keeps it (checkpoint); resuming records only the others and ends with
    the same counts as a straight run."""
    from hf_specdecpp.bench.exact.run import ExactOptions, run_exact
    from hf_specdecpp.testing import tiny_tokenizer

    target, draft = pair
    prompts = ["w10 w11 w12", "w20 w21", "w30 w31 w32 w33"]
    configs = {"k2": registry.build("fixed-k", num_candidates=2), "hf": ASSISTED}
    options = ExactOptions(max_new_tokens=10, costs=CostCurve(0.3, 1.0, {0: 1.0, 8: 1.4}), output_dir=tmp_path)
    straight = run_exact(target, draft, tiny_tokenizer(), prompts, configs, ExactOptions(**{**vars(options),
                                                                                         "output_dir": None}))

    def stop(prompt_id, info):
        raise _Interrupt

    with pytest.raises(_Interrupt):
        run_exact(target, draft, tiny_tokenizer(), prompts, configs, options, progress=stop)
    assert set(json.loads((tmp_path / "exact.json").read_text())["prompt_info"]) == {"prompt0"}
    seen = []
    resumed = run_exact(target, draft, tiny_tokenizer(), prompts, configs, ExactOptions(**{**vars(options),
                                                                                        "resume": True}),
                        progress=lambda p, i: seen.append(p))
    assert seen == ["prompt1", "prompt2"] and resumed.settings["runs"] == 2
    key = lambda r: (r.prompt_id, r.config)  # noqa: E731
    assert [(key(r), r.candidate_lengths, r.units) for r in sorted(resumed.records, key=key)] == \
        [(key(r), r.candidate_lengths, r.units) for r in sorted(straight.records, key=key)]


def test_greedy_cache_skips_the_targets_generation_and_gives_the_same_counts(pair, tmp_path, monkeypatch):
    """A second exact run with the cache file of a first one never generates with the target, and with other
    configurations (another K) its shared configurations' counts are those of the first run."""
    from hf_specdecpp.bench.exact import recorder
    from hf_specdecpp.bench.exact.run import ExactOptions, run_exact
    from hf_specdecpp.testing import tiny_tokenizer

    target, draft = pair
    prompts = ["w10 w11 w12", "w20 w21"]
    cache = tmp_path / "greedy.json"
    options = ExactOptions(max_new_tokens=10, costs=CostCurve(0.3, 1.0, {0: 1.0, 8: 1.4}), greedy_cache=cache)
    first = run_exact(target, draft, tiny_tokenizer(), prompts, {"k2": registry.build("fixed-k", num_candidates=2)},
                      options)
    assert len(json.loads(cache.read_text())["outputs"]) == 2

    def no_generation(*args, **kwargs):
        raise AssertionError("the cached greedy output must be used")

    monkeypatch.setattr(recorder, "target_greedy", no_generation)
    second = run_exact(target, draft, tiny_tokenizer(), prompts, {"k2": registry.build("fixed-k", num_candidates=2),
                                                                  "k4": registry.build("fixed-k", num_candidates=4)},
                       options)
    assert all(info["cached_greedy"] for info in second.prompt_info.values())
    counts = lambda result: {(r.prompt_id, r.config): (r.candidate_lengths, r.accepted_lengths)  # noqa: E731
                             for r in result.records if r.config in ("k2", "oracle", "target")}
    assert counts(first) == counts(second) and any(r.config == "k4" for r in second.records)
