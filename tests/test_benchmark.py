"""The benchmark baselines and harness on tiny models (no wall-clock assertions)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

import hf_specdecpp  # noqa: F401  (installs candidate_generator=)
from hf_specdecpp import (EntropyStoppingCandidateGenerator, FixedLengthCandidateGenerator, GammaTuneCandidateGenerator,
                          SpecDecPPCandidateGenerator)
from hf_specdecpp.bench.configs import ASSISTED, HEURISTIC, ORACLE, TARGET_ALONE
from hf_specdecpp.bench.oracle import oracle_rounds
from hf_specdecpp.bench.runner import rotation, run_benchmark
from hf_specdecpp.bench.summary import SUMMARY_COLUMNS
from hf_specdecpp.methods.entropy import estimate_acceptance
from hf_specdecpp.testing import tiny_pair, tiny_prompts, tiny_tokenizer

try:
    from .helpers import random_head
except ImportError:
    from helpers import random_head


@pytest.fixture(scope="module")
def pair():
    return tiny_pair(noise=0.05)


def _inputs(n=2):
    return [torch.tensor([[5 + 7 * i + j for j in range(6)]]) for i in range(n)]


def _greedy(target, ids, n, **kw):
    out = target.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                          pad_token_id=0, **kw)
    return out[0, ids.shape[1]:].tolist()


@pytest.mark.parametrize("make", [lambda: FixedLengthCandidateGenerator(num_candidates=3),
                                  lambda: EntropyStoppingCandidateGenerator(lam=0.2, gamma=0.5),
                                  lambda: EntropyStoppingCandidateGenerator(lam=0.9, estimator="top1"),
                                  lambda: EntropyStoppingCandidateGenerator(lam=0.3, estimator="svip"),
                                  lambda: GammaTuneCandidateGenerator(initial=3.0, smoothing=0.5, max_candidates=8)])
def test_baselines_are_lossless_in_greedy(pair, make):
    target, draft = pair
    gen = make()
    for ids in _inputs():
        reference = _greedy(target, ids, 24)
        assert _greedy(target, ids, 24, assistant_model=draft, candidate_generator=gen) == reference
        assert gen.stats.new_tokens == len(reference)


def test_fixed_length_drafts_exactly_k(pair):
    target, draft = pair
    gen = FixedLengthCandidateGenerator(num_candidates=4)
    _greedy(target, _inputs(1)[0], 30, assistant_model=draft, candidate_generator=gen)
    lengths = gen.stats.candidate_lengths
    assert len(lengths) > 2
    assert all(n == 4 for n in lengths[:-1])  # the last round may be cut by the length limit or EOS
    assert lengths[-1] <= 4
    with pytest.raises(ValueError):
        FixedLengthCandidateGenerator(num_candidates=0)


def test_estimators_by_hand():
    scores = torch.tensor([[0.0, 0.0, -math.inf, -math.inf]])  # two equally likely tokens
    assert estimate_acceptance(scores, "top1").item() == pytest.approx(0.5)
    assert estimate_acceptance(scores, "entropy", gamma=0.5).item() == pytest.approx(1 - math.sqrt(0.5 * math.log(2)))
    peaked = torch.tensor([[50.0, 0.0, 0.0, 0.0]])
    assert estimate_acceptance(peaked, "entropy").item() == pytest.approx(1.0, abs=1e-6)


def test_svip_rule_by_hand_and_its_order_equals_the_entropy_rule():
    """SVIP stops after a token when sqrt(0.15 H) > h: two equal tokens give sqrt(0.15 ln 2) = 0.322."""
    two = torch.tensor([[0.0, 0.0, -math.inf, -math.inf]])
    seq = torch.zeros(1, 3, dtype=torch.long)
    assert EntropyStoppingCandidateGenerator(lam=0.3, estimator="svip").new_rule(None)(seq, two, step=0).item()
    assert not EntropyStoppingCandidateGenerator(lam=0.33, estimator="svip").new_rule(None)(seq, two, step=0).item()
    assert EntropyStoppingCandidateGenerator(lam=0.3, estimator="svip").config.gamma == 0.15
    assert EntropyStoppingCandidateGenerator(lam=0.3).config.gamma == 1.0  # AdaEDL's default unchanged
    scores = torch.randn(200, 16, generator=torch.Generator().manual_seed(0)) * 2
    for h in (0.2, 0.4, 0.6):  # same tokens stopped as AdaEDL at lam = 1 - h with the same gamma
        svip = EntropyStoppingCandidateGenerator(lam=h, estimator="svip").config.stop(scores)
        adaedl = EntropyStoppingCandidateGenerator(lam=1 - h, gamma=0.15).config.stop(scores)
        assert torch.equal(svip, adaedl)


def test_gammatune_adapts_between_rounds(pair):
    """K starts at `initial` and follows the accepted counts: after a round that accepted a of d, gamma moves
    halfway to a (a + 1 when all were accepted), and each generate() call starts again."""
    target, draft = pair
    gen = GammaTuneCandidateGenerator(initial=5.0, smoothing=0.5, max_candidates=10)
    for _ in range(2):
        _greedy(target, _inputs(1)[0], 30, assistant_model=draft, candidate_generator=gen)
        drafted, accepted = gen.stats.candidate_lengths, gen.stats.accepted_lengths
        gamma = 5.0
        assert drafted[0] == 5
        for i in range(len(drafted) - 1):
            gamma = 0.5 * gamma + 0.5 * (accepted[i] + 1 if accepted[i] == drafted[i] else accepted[i])
            assert drafted[i + 1] <= min(10, max(1, math.floor(gamma + 0.5)))  # less only at the length limit


def test_entropy_rule_stops_where_hand_computed():
    gen = EntropyStoppingCandidateGenerator(lam=0.5, gamma=1.0, min_candidates=2, max_candidates=10)
    # entropies: peaked (~0) -> 1 - 0 = 1 >= 0.5 keep; uniform over 4 -> 1 - sqrt(ln 4) = -0.18 < 0.5 stop.
    peaked = torch.tensor([[30.0, 0.0, 0.0, 0.0]])
    flat = torch.zeros(1, 4)
    two = torch.tensor([[0.0, 0.0, -math.inf, -math.inf]])  # 1 - sqrt(ln 2) = 0.167 < 0.5
    seq = torch.zeros(1, 3, dtype=torch.long)
    rule = gen.new_rule(None)  # min_candidates is the drafting loop's job (checked below), the rule only judges
    assert not rule(seq, peaked, hidden_states=None, step=1).item()
    assert rule(seq, flat, hidden_states=None, step=1).item()
    assert rule(seq, two, hidden_states=None, step=2).item()
    loose = EntropyStoppingCandidateGenerator(lam=0.1).new_rule(None)
    assert not loose(seq, two, hidden_states=None, step=0).item()  # 0.167 >= 0.1


def test_min_candidates_hold_in_the_drafting_loop():
    target, draft = tiny_pair("llama", noise=0.3, seed=4)
    ids = torch.tensor([[2, 5, 6, 7]])
    gen = EntropyStoppingCandidateGenerator(lam=2.0, min_candidates=3, max_candidates=5)  # the rule always stops
    target.generate(ids, assistant_model=draft, candidate_generator=gen, max_new_tokens=20, do_sample=False,
                    eos_token_id=None)
    left = 20  # each round drafts min_candidates, or what still fits next to the target's own token
    for drafted, accepted in zip(gen.stats.candidate_lengths, gen.stats.accepted_lengths):
        assert drafted == max(0, min(3, left - 1))
        left -= accepted + 1
    assert left == 0


def test_oracle_rounds_by_hand():
    target = [1, 2, 3, 4, 5, 6, 7]
    draft = [1, 2, 9, 4, 9, 9, 7]  # mismatch at 2, 4, 5
    # round 1: accepts 1,2 (+3 from target); round 2: accepts 4 (+5); round 3: none (+6); round 4: accepts 7
    assert oracle_rounds(target, draft) == [2, 1, 0, 1]
    assert oracle_rounds([1, 2], [1, 2]) == [2]
    assert rotation(["a", "b", "c"], 4) == ["b", "c", "a"]


def test_runner_tables_plots_and_interleaving(pair, tmp_path):
    target, draft = pair
    tokenizer = tiny_tokenizer()
    prompts = [p["prompt"] for p in tiny_prompts(2, seed=3)]
    configs = {
        "target": TARGET_ALONE,
        "hf": ASSISTED,
        "heur": HEURISTIC,
        "fixed2": FixedLengthCandidateGenerator(num_candidates=2),
        "entropy": EntropyStoppingCandidateGenerator(lam=0.2),
        "sdpp": SpecDecPPCandidateGenerator(head=random_head(draft.config.hidden_size), threshold=0.5),
    }
    saved = (draft.generation_config.num_assistant_tokens_schedule, draft.generation_config.num_assistant_tokens)
    result = run_benchmark(target, draft, tokenizer, prompts, configs, max_new_tokens=16, output_dir=tmp_path)
    assert (draft.generation_config.num_assistant_tokens_schedule,
            draft.generation_config.num_assistant_tokens) == saved  # heuristic settings restored
    names = list(configs)
    assert result.run_order == [("prompt0", n) for n in names] + [("prompt1", n) for n in names[1:] + names[:1]]
    assert all(r.equal_to_target is True for r in result.records)
    for r in result.records:
        assert r.new_tokens == 16
        assert r.target_forwards >= 1
        if r.config == "target":
            assert r.target_forwards == 16 and r.draft_forwards == 0
        if r.config in ("fixed2", "entropy", "sdpp"):
            assert r.candidate_lengths and sum(r.candidate_lengths) == r.drafted_tokens
    rows = {row["config"]: row for row in result.summary}
    assert set(rows) == set(names) | {ORACLE}
    assert rows["target"]["speedup"] == pytest.approx(1.0)
    oracle_fw = rows[ORACLE]["target_fw_per_token"]
    assert all(oracle_fw <= row["target_fw_per_token"] + 1e-9 for row in result.summary)
    assert all(row["all_equal"] for name, row in rows.items() if name != ORACLE)
    for name in ("summary.md", "summary.csv", "results.csv", "oracle.csv", "results.json", "speedup.png",
                 "candidate_lengths.png", "tradeoff.png"):
        assert (tmp_path / name).stat().st_size > 0
    with open(tmp_path / "summary.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == SUMMARY_COLUMNS
        assert [row["config"] for row in reader] == names + [ORACLE]
    table = (tmp_path / "summary.md").read_text()
    assert "| config | speedup |" in table and "target fw/token" in table and "| oracle |" in table
    assert "Machine: CPU" in table and "float32" in table  # which machine, device and dtype the timings come from
    with open(tmp_path / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 2 * len(names)
    # paired with the (first) SpecDec++ config by default; the geometric mean ratio is the ratio of the speedups
    assert result.paired_with == "sdpp" and {r["config"] for r in result.paired} == set(names) - {"sdpp"}
    for r in result.paired:
        assert r["ratio"] == pytest.approx(rows["sdpp"]["speedup"] / rows[r["config"]]["speedup"])
        assert r["ci_low"] <= r["ratio"] <= r["ci_high"] and r["prompts"] == 2
    assert "Paired with `sdpp`" in table and (tmp_path / "paired.csv").stat().st_size > 0
    with pytest.raises(ValueError, match="paired_with='nope'"):
        run_benchmark(target, draft, tokenizer, prompts, configs, max_new_tokens=4, paired_with="nope")


def test_runner_sampling_has_no_equality_or_oracle(pair):
    target, draft = pair
    result = run_benchmark(target, draft, tiny_tokenizer(), ["w10 w11 w12"],
                           {"fixed3": FixedLengthCandidateGenerator(num_candidates=3)}, sampling=True,
                           max_new_tokens=8, warmup=False)
    assert [r.config for r in result.records] == ["target", "fixed3"]  # target alone added
    assert all(r.equal_to_target is None for r in result.records)
    assert not result.oracle


def test_cli_tiny_smoke(tmp_path):
    from typer.testing import CliRunner

    from hf_specdecpp.cli import app

    res = CliRunner().invoke(app, ["bench", "--tiny", "--subset", "1", "--fixed-k", "2", "--thresholds", "0.5",
                                   "--tree-budgets", "2,4", "--specdec-caps", "3", "--max-new-tokens", "8", "--output-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "specdec++-h0.5" in res.output and "| oracle |" in res.output
    assert "specdec++-h" in res.output and "-cap3 |" in res.output
    for name in ("dyspec-B2", "dyspec-B4", "dyspec+head-B2", "dyspec+head-B4"):
        assert f"| {name} |" in res.output
    assert (tmp_path / "tiny" / "summary.csv").exists()
    assert (tmp_path / "tiny" / "tree_budgets.png").stat().st_size > 1000
    overhead = json.loads((tmp_path / "head_overhead.json").read_text())
    assert overhead["head_s"] > 0 and overhead["draft_step_s"] > 0
    assert overhead["overhead"] == pytest.approx(overhead["head_s"] / overhead["draft_step_s"])
    assert "Head overhead:" in res.output


@pytest.mark.parametrize("sampling", [False, True])
def test_head_overhead_runs_the_per_token_work(pair, sampling):
    """The measured head step is the head's per-token work: one predict_drafted call per timed draft step."""
    from hf_specdecpp.bench.overhead import measure_head_overhead

    from helpers import producing_head

    _, draft = pair
    head = producing_head(draft.config.hidden_size)
    calls = []
    original = head.predict_drafted
    head.predict_drafted = lambda *a: calls.append(a[1].shape) or original(*a)
    r = measure_head_overhead(draft, head, prompt_length=8, repeats=5, warmup=1, temperature=0.7 if sampling else None)
    assert len(calls) == 6 and calls[0][-1] == draft.config.vocab_size
    assert r["repeats"] == 5 and r["input_state"] == "producing_state" and r["confidence_features"]


def test_cli_rejects_bad_tree_budget(tmp_path):
    from typer.testing import CliRunner

    from hf_specdecpp.cli import app

    res = CliRunner().invoke(app, ["bench", "--tiny", "--tree-budgets", "0", "--output-dir", str(tmp_path)])
    assert res.exit_code != 0 and "tree budgets must be >= 1" in res.output


class _Interrupt(Exception):
    pass


def test_runner_resumes_an_interrupted_run(pair, tmp_path):
    """A run stopped after its first prompt keeps that prompt (checkpoint); --resume runs only the others and ends
    with the same tokens and per-prompt records as a straight run."""
    target, draft = pair
    tokenizer = tiny_tokenizer()
    prompts = [p["prompt"] for p in tiny_prompts(3, seed=5)]

    def configs():
        return {"target": TARGET_ALONE, "fixed2": FixedLengthCandidateGenerator(num_candidates=2),
                "entropy": EntropyStoppingCandidateGenerator(lam=0.2)}

    straight = run_benchmark(target, draft, tokenizer, prompts, configs(), max_new_tokens=12, warmup=False)

    def stop_after_first_prompt(prompt_id, config, rec):
        if prompt_id == "prompt1":
            raise _Interrupt

    with pytest.raises(_Interrupt):
        run_benchmark(target, draft, tokenizer, prompts, configs(), max_new_tokens=12, warmup=False,
                      output_dir=tmp_path, progress=stop_after_first_prompt)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert {r["prompt_id"] for r in saved["records"]} == {"prompt0"}
    assert saved["settings"]["prompts"] == 1

    calls = []
    resumed = run_benchmark(target, draft, tokenizer, prompts, configs(), max_new_tokens=12, warmup=False,
                            output_dir=tmp_path, resume=True, progress=lambda p, c, r: calls.append((p, c)))
    assert {p for p, _ in calls} == {"prompt1", "prompt2"}  # prompt0 was not run again
    assert calls[:3] == [("prompt1", n) for n in rotation(list(configs()), 1)]  # rotation keeps the prompt index
    assert resumed.settings["prompts"] == 3 and resumed.settings["runs"] == 2
    assert "collected in 2 sittings" in (tmp_path / "summary.md").read_text()
    key = lambda r: (r.prompt_id, r.config)  # noqa: E731
    assert sorted(map(key, resumed.records)) == sorted(map(key, straight.records))
    for a, b in zip(sorted(resumed.records, key=key), sorted(straight.records, key=key)):
        assert a.tokens == b.tokens and a.equal_to_target is True
        assert a.candidate_lengths == b.candidate_lengths and a.target_forwards == b.target_forwards
    assert [o.prompt_id for o in resumed.oracle] == ["prompt0", "prompt1", "prompt2"]
    rows = {r["config"]: r for r in resumed.summary}
    assert rows["fixed2"]["prompts"] == 3 and rows[ORACLE]["prompts"] == 3
    with open(tmp_path / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 3 * 3

    again = run_benchmark(target, draft, tokenizer, prompts, configs(), max_new_tokens=12, warmup=False,
                          output_dir=tmp_path, resume=True, progress=lambda *a: pytest.fail("nothing left to run"))
    assert again.settings["runs"] == 3 and len(again.records) == 9


def test_runner_refuses_to_resume_with_other_settings(pair, tmp_path):
    from hf_specdecpp.bench.checkpoint import ResumeError

    target, draft = pair
    tokenizer = tiny_tokenizer()
    configs = {"fixed2": FixedLengthCandidateGenerator(num_candidates=2)}
    run_benchmark(target, draft, tokenizer, ["w10 w11"], configs, max_new_tokens=6, warmup=False, output_dir=tmp_path)
    with pytest.raises(ResumeError, match="max_new_tokens: 6 .existing. vs 8"):
        run_benchmark(target, draft, tokenizer, ["w10 w11"], configs, max_new_tokens=8, warmup=False,
                      output_dir=tmp_path, resume=True)
    with pytest.raises(ResumeError, match="fixed2"):
        run_benchmark(target, draft, tokenizer, ["w10 w11"], {"fixed2": FixedLengthCandidateGenerator(num_candidates=3)},
                      max_new_tokens=6, warmup=False, output_dir=tmp_path, resume=True)
    with pytest.raises(ResumeError, match="output_dir"):
        run_benchmark(target, draft, tokenizer, ["w10 w11"], configs, max_new_tokens=6, resume=True)


def test_cli_resume_with_other_options_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from hf_specdecpp.cli import app

    base = ["bench", "--tiny", "--subset", "1", "--fixed-k", "2", "--thresholds", "0.5", "--entropy-lams", "",
            "--output-dir", str(tmp_path)]
    assert CliRunner().invoke(app, base + ["--max-new-tokens", "6"]).exit_code == 0
    res = CliRunner().invoke(app, base + ["--max-new-tokens", "7", "--resume"])
    assert res.exit_code == 1 and "cannot resume" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, base + ["--max-new-tokens", "6", "--resume", "--subset", "2"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "tiny" / "results.json").read_text())["settings"]["prompts"] == 2


def test_paired_ratios_by_hand():
    from scipy import stats

    from hf_specdecpp.bench.paired import paired_ratios
    from hf_specdecpp.bench.records import Record

    def rec(prompt, config, t):
        return Record(prompt, config, 0, t, 8, 8, 0)

    records = [rec(f"p{i}", "ref", 1.0) for i in range(3)]
    records += [rec("p0", "slow", 1.0), rec("p1", "slow", 2.0), rec("p2", "slow", 4.0)]
    records += [rec("p0", "fast", 0.5), rec("p1", "fast", 0.5), rec("p2", "fast", 0.5), rec("p9", "fast", 0.1)]
    rows = {r["config"]: r for r in paired_ratios(records, "ref")}
    assert set(rows) == {"slow", "fast"}
    slow = rows["slow"]  # log ratios 0, ln 2, ln 4: mean ln 2, sample sd ln 2
    half = stats.t.ppf(0.975, 2) * math.log(2) / math.sqrt(3)
    assert slow["ratio"] == pytest.approx(2.0)
    assert slow["ci_low"] == pytest.approx(2.0 * math.exp(-half)) and slow["ci_high"] == pytest.approx(2.0 * math.exp(half))
    assert (slow["min"], slow["max"], slow["wins"], slow["prompts"]) == (pytest.approx(1.0), pytest.approx(4.0), 2, 3)
    fast = rows["fast"]  # p9 has no reference time: left out
    assert fast["prompts"] == 3 and fast["wins"] == 0 and fast["ratio"] == pytest.approx(0.5)
    assert fast["ci_low"] == pytest.approx(0.5) and fast["ci_high"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no records of 'nope'"):
        paired_ratios(records, "nope")
