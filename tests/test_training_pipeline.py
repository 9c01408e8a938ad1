"""make-data -> train -> calibrate -> push on a tiny draft/target pair, plus resumption and input errors."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from hf_specdecpp.cli import app
from hf_specdecpp.head import AcceptanceHead
from hf_specdecpp.training import (
    TrainingError,
    calibrate_head,
    evaluate_predictions,
    load_features,
    make_data,
    read_metadata,
    train_head,
)
from hf_specdecpp.training.batch_features import response_hidden
from hf_specdecpp.training.tokens import pack_batch
from hf_specdecpp.testing import save_tiny_pair, tiny_prompts

NOISE = 0.3
NUM_PROMPTS = 64
MAX_NEW = 64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models are dominated by thread start-up costs on a busy machine: one intra-op thread is much faster."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    target, draft = save_tiny_pair(root / "models", noise=NOISE, seed=0)
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in tiny_prompts(NUM_PROMPTS, seed=0, with_response=40)))
    data = root / "data"
    make_data(data, draft=draft, target=target, prompts_file=prompts, max_new_tokens=MAX_NEW, shard_size=16,
              batch_size=8, dev_fraction=0.25, show_progress=False)
    return {"root": root, "target": target, "draft": draft, "prompts": prompts, "data": data}


@pytest.fixture(scope="module")
def trained(ws):
    out = ws["root"] / "head"
    state = train_head(ws["data"], out, epochs=8, batch_size=4, lr=3e-3, show_progress=False)
    return out, state


def _kw(ws, **over):
    kw = dict(draft=ws["draft"], target=ws["target"], prompts_file=ws["prompts"], max_new_tokens=MAX_NEW,
              shard_size=16, batch_size=8, dev_fraction=0.25, show_progress=False)
    kw.update(over)
    return kw


# ---------------------------------------------------------------------------------------------- make-data
def test_dataset_layout_and_metadata(ws):
    meta = read_metadata(ws["data"])
    assert meta["vocab_size"] == 96 and meta["hidden_size"] == 32 and meta["mix_ratio"] == 0.15
    assert meta["decoding"]["do_sample"] is False and meta["responses"] == "target"
    assert meta["draft"]["weights_sha"] != meta["target"]["weights_sha"]
    train, dev = load_features(ws["data"], "train"), load_features(ws["data"], "dev")
    assert len(train) + len(dev) == NUM_PROMPTS and len(dev) == 16
    ids = sorted(list(train["prompt_index"]) + list(dev["prompt_index"]))
    assert ids == list(range(NUM_PROMPTS))  # every prompt exactly once
    row = dev.with_format("numpy")[0]
    n = len(row["response_tokens"])
    assert row["calib_hidden"].shape == (n, 32) and len(row["calib_labels"]) == n
    assert row["hidden"].shape == (len(row["positions"]), 32) == (len(row["labels"]), 32)


def test_only_draft_positions_carry_labels_and_cached_hidden_is_the_draft_state(ws):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = load_features(ws["data"], "dev").with_format("numpy")
    draft = AutoModelForCausalLM.from_pretrained(ws["draft"]).eval()
    tok = AutoTokenizer.from_pretrained(ws["target"])
    prompts = [json.loads(l)["prompt"] for l in ws["prompts"].read_text().splitlines()]
    total_mixed = total = 0
    for row in dev:
        pos = row["positions"]
        # The label rows are exactly the per-position labels of the drafted positions.
        np.testing.assert_allclose(row["labels"], row["calib_labels"][pos])
        # Rebuild Z: draft tokens at the labelled positions, response tokens elsewhere, and rerun the draft.
        x, y = np.array(row["response_tokens"]), np.array(row["draft_tokens"])
        is_draft = np.zeros(len(x), bool)
        is_draft[pos] = True
        z = np.where(is_draft, y, x)
        total_mixed += int((~is_draft).sum())
        total += len(x)
        p_ids = tok(prompts[row["prompt_index"]])["input_ids"]
        batch = pack_batch([p_ids], [z.tolist()], 0, torch.device("cpu"))
        hidden = response_hidden(draft, *batch)[0].numpy()
        np.testing.assert_allclose(row["hidden"], hidden[pos], atol=2e-2, rtol=1e-2)
        # greedy labels: 1 iff the draft argmax equals the target argmax (X is the target's greedy output)
        assert set(np.unique(row["calib_labels"])) <= {0.0, 1.0}
        np.testing.assert_array_equal(row["calib_labels"], (x == y).astype(np.float32))
    assert 0.05 < total_mixed / total < 0.3  # about r = 0.15 of the positions keep X


def test_producing_state_columns_are_the_states_that_drafted_each_token(ws):
    """context_hidden[i] is the draft's state over prompt + X_<i; its logits give Y_i, the label and features."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_specdecpp.head import confidence_features

    draft = AutoModelForCausalLM.from_pretrained(ws["draft"]).eval()
    tok = AutoTokenizer.from_pretrained(ws["target"])
    prompts = [json.loads(l)["prompt"] for l in ws["prompts"].read_text().splitlines()]
    for split in ("dev", "train"):
        rows = load_features(ws["data"], split).with_format("numpy")
        for row in [rows[i] for i in range(3)]:
            x = np.array(row["response_tokens"])
            n = len(x)
            assert row["context_hidden"].shape == (n, 32) and row["context_features"].shape == (n, 3)
            ids = torch.tensor([tok(prompts[row["prompt_index"]])["input_ids"] + x.tolist()])
            P = ids.shape[1] - n
            with torch.no_grad():
                out = draft(input_ids=ids, output_hidden_states=True)
            hidden = out.hidden_states[-1][0, P - 1:P + n - 1]
            logits = out.logits[0, P - 1:P + n - 1]
            np.testing.assert_allclose(row["context_hidden"], hidden.numpy(), atol=2e-2, rtol=1e-2)
            y = logits.argmax(-1)
            np.testing.assert_array_equal(row["draft_tokens"], y.numpy())
            np.testing.assert_array_equal(row["context_labels"], (y.numpy() == x).astype(np.float32))
            np.testing.assert_allclose(row["context_features"], confidence_features(logits, y).numpy(), atol=1e-4)
            if split == "dev":  # greedy: the r = 0 labels describe the same tokens
                np.testing.assert_array_equal(row["context_labels"], row["calib_labels"])


def test_producing_state_head_trains_calibrates_and_stops_without_lag(ws):
    from hf_specdecpp import SpecDecPPCandidateGenerator
    from hf_specdecpp.head import PRODUCING_STATE

    out = ws["root"] / "head_producing"
    state = train_head(ws["data"], out, epochs=8, batch_size=4, lr=1e-3, input_state=PRODUCING_STATE,
                       use_confidence_features=True, show_progress=False)
    best = state["best"]["metrics"]
    assert best["weighted_bce"] < best["baseline_weighted_bce"] and best["auroc_reject"] > 0.65
    head = AcceptanceHead.from_pretrained(str(out))
    assert head.input_state == PRODUCING_STATE and head.use_confidence_features
    assert head.feature_classifier.weight.abs().sum() > 0  # the feature weights were trained and saved
    cal_dir = ws["root"] / "head_producing_cal"
    r = calibrate_head(out, ws["data"], output_dir=cal_dir, cost_ratio=0.3, verify_slope=0.02, show_progress=False)
    assert r["time_per_token"] <= r["fixed_k_time_per_token"] + 1e-9
    calibrated = AcceptanceHead.from_pretrained(str(cal_dir))
    assert calibrated.policy.threshold == r["threshold"]
    assert calibrated.policy.measured_on is None  # costs given, not measured: the policy is not tied to a device
    gen = SpecDecPPCandidateGenerator(head=calibrated)
    models = [AutoModelForCausalLM.from_pretrained(ws[role]) for role in ("draft", "target")]
    assert gen.resolve_policy(*models).max_candidates == r["max_candidates"]
    assert "produced the drafted token" in (cal_dir / "README.md").read_text()


def test_calibration_reuses_measured_costs_of_another_head(ws, trained):
    out, _ = trained
    measured = ws["root"] / "head_measured"
    first = calibrate_head(out, ws["data"], output_dir=measured, prompt_length=16, repeats=3, show_progress=False,
                           plot=False)
    second = calibrate_head(out, ws["data"], output_dir=ws["root"] / "head_reused", costs_from=measured,
                            show_progress=False, plot=False)
    assert second["cost"]["reused_from"] == str(measured)
    assert second["cost_ratio"] == first["cost_ratio"] and second["verify_costs"] == first["verify_costs"]
    assert second["threshold"] == first["threshold"]  # same head, data and costs: the same choice
    unmeasured = ws["root"] / "head_unmeasured"
    calibrate_head(out, ws["data"], output_dir=unmeasured, cost_ratio=0.1, show_progress=False, plot=False)
    with pytest.raises(TrainingError, match="no measured costs"):
        calibrate_head(out, ws["data"], output_dir=ws["root"] / "x", costs_from=unmeasured, show_progress=False,
                       plot=False)
    curve = ws["root"] / "costs.json"  # a cost-curve file (measure_costs.py, bench --exact) works the same way
    curve.write_text(json.dumps({"costs": AcceptanceHead.from_pretrained(str(measured))
                                 .training_info["calibration"]["cost"], "machine": {}}))
    third = calibrate_head(out, ws["data"], output_dir=ws["root"] / "head_from_file", costs_from=curve,
                           show_progress=False, plot=False)
    assert third["verify_costs"] == first["verify_costs"] and third["threshold"] == first["threshold"]
    assert AcceptanceHead.from_pretrained(str(ws["root"] / "head_from_file")).policy.measured_on is not None
    (ws["root"] / "bad.json").write_text(json.dumps({"costs": {"c_draft": 0.3}}))
    with pytest.raises(TrainingError, match="bad.json is not a cost curve"):
        calibrate_head(out, ws["data"], output_dir=ws["root"] / "y", costs_from=ws["root"] / "bad.json",
                       show_progress=False, plot=False)


def test_producing_state_head_needs_new_data(ws, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(ws["data"], old)
    for shard in (old / "shards").iterdir():  # an older make-data folder: no context columns
        import datasets

        ds = datasets.load_from_disk(str(shard)).remove_columns(["context_hidden", "context_features", "context_labels"])
        tmp = tmp_path / "tmp"
        ds.save_to_disk(str(tmp))
        shutil.rmtree(shard)
        shutil.move(str(tmp), str(shard))
    manifest = json.loads((old / "progress.json").read_text())
    for entry in manifest["shards"].values():  # older make-data versions recorded no checksums
        del entry["files"]
    (old / "progress.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="no checksums"), pytest.raises(TrainingError, match="older make-data"):
        train_head(old, tmp_path / "h", input_state="producing_state", show_progress=False)
    with pytest.raises(TrainingError, match="input state must be one of"):
        train_head(ws["data"], tmp_path / "h2", input_state="middle", show_progress=False)
    with pytest.raises(TrainingError, match="confidence features need"):
        train_head(ws["data"], tmp_path / "h3", use_confidence_features=True, show_progress=False)


def test_sampling_labels_in_dataset_mode(ws):
    out = ws["root"] / "data_sampled"
    make_data(out, **_kw(ws, responses="dataset", temperature=0.8, top_p=0.9, max_prompts=12))
    meta = read_metadata(out)
    assert meta["decoding"] == {"temperature": 0.8, "top_p": 0.9, "top_k": 0, "do_sample": True}
    rows = load_features(out, "train").with_format("numpy")
    labels = np.concatenate([np.asarray(l) for l in rows["labels"]])
    assert ((labels >= 0) & (labels <= 1)).all() and ((labels > 0) & (labels < 1)).any()  # soft labels
    assert all(len(r) == 40 for r in rows["response_tokens"])  # the data set's answers, 40 words
    context = np.concatenate([np.asarray(l) for l in rows["context_labels"]])
    assert ((context >= 0) & (context <= 1)).all() and ((context > 0) & (context < 1)).any()
    features = np.concatenate([np.asarray(f) for f in rows["context_features"]])
    assert np.isfinite(features).all()  # top-p removed tokens (-inf scores) do not leak into the features
    assert (features[:, 0] <= features[:, 1] + 1e-6).all() and (features[:, 2] >= 0).all()


def test_make_data_resume_after_interruption_loses_and_duplicates_nothing(ws):
    out = ws["root"] / "data_resume"

    def boom(shard):
        if shard == 0:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        make_data(out, **_kw(ws), on_shard_done=boom)
    manifest = json.loads((out / "progress.json").read_text())
    assert list(manifest["shards"]) == ["0"] and not manifest["complete"]
    (out / "shards" / ".tmp-train-00001").mkdir()  # debris of a shard killed mid-write
    make_data(out, **_kw(ws))
    for split in ("train", "dev"):
        a = load_features(out, split).with_format("numpy")
        b = load_features(ws["data"], split).with_format("numpy")
        assert sorted(a["prompt_index"]) == sorted(b["prompt_index"])
        for ra, rb in zip(a, b):
            assert ra["prompt_index"] == rb["prompt_index"]
            np.testing.assert_array_equal(ra["labels"], rb["labels"])
    assert not (out / "shards" / ".tmp-train-00001").exists()


# ---------------------------------------------------------------------------------------------- train
def test_trained_head_beats_constant_predictor(ws, trained):
    out, state = trained
    best = state["best"]["metrics"]
    assert len(state["history"]) == 8
    assert best["weighted_bce"] < best["baseline_weighted_bce"]
    assert best["auroc_reject"] > 0.65
    head = AcceptanceHead.from_pretrained(str(out))
    assert head.draft_model_id == ws["draft"] and head.target_model_id == ws["target"]
    assert head.training_info["dev_metrics"]["weighted_bce"] == best["weighted_bce"]
    # Unweighted loss: the head also beats the base rate on the plain BCE.
    plain_out = ws["root"] / "head_plain"
    plain = train_head(ws["data"], plain_out, epochs=8, batch_size=4, lr=3e-3, w_reject=1.0, show_progress=False)
    m = plain["best"]["metrics"]
    assert m["bce"] < m["baseline_bce"] and m["auroc_reject"] > 0.65


def test_train_resume_after_interruption(ws, trained):
    out = ws["root"] / "head_resume"
    kw = dict(epochs=3, batch_size=4, lr=3e-3, show_progress=False)

    def boom(epoch, metrics):
        if epoch == 1:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        train_head(ws["data"], out, on_epoch_end=boom, **kw)
    with pytest.raises(TrainingError, match="resume"):
        train_head(ws["data"], out, **kw)  # an existing run is never silently restarted
    state = train_head(ws["data"], out, resume=True, **kw)
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
    ref = train_head(ws["data"], ws["root"] / "head_ref", **kw)
    resumed, straight = AcceptanceHead.from_pretrained(str(out)), AcceptanceHead.from_pretrained(str(ws["root"] / "head_ref"))
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)
    assert state["history"][-1]["weighted_bce"] == pytest.approx(ref["history"][-1]["weighted_bce"])
    with pytest.raises(TrainingError, match="other data or settings"):
        train_head(ws["data"], out, resume=True, **{**kw, "lr": 1e-2})


def test_train_refuses_data_for_other_models(ws):
    with pytest.raises(TrainingError, match="declared for draft"):
        train_head(ws["data"], ws["root"] / "x", draft_model_id="someone/else", show_progress=False)


# ---------------------------------------------------------------------------------------------- calibrate
def test_calibrated_threshold_beats_fixed_k(ws, trained):
    out, _ = trained
    cal_dir = ws["root"] / "head_cal"
    r = calibrate_head(out, ws["data"], output_dir=cal_dir, cost_ratio=0.05, verify_slope=0.02, show_progress=False)
    fixed = {int(k): v for k, v in r["fixed_k"].items()}
    assert r["time_per_token"] < fixed[4]  # a fixed-K policy on the same data
    assert r["time_per_token"] <= r["fixed_k_time_per_token"] + 1e-9  # ... and the best one
    assert r["time_per_token"] < 1.0  # faster than the target alone
    head = AcceptanceHead.from_pretrained(str(cal_dir))
    assert head.policy.threshold == r["threshold"] and head.policy.cost_ratio == 0.05
    assert head.policy.max_candidates == r["max_candidates"] <= 20
    from hf_specdecpp import SpecDecPPCandidateGenerator

    gen = SpecDecPPCandidateGenerator(head=head)
    models = [AutoModelForCausalLM.from_pretrained(ws[role]) for role in ("draft", "target")]
    policy = gen.resolve_policy(*models)
    assert (policy.threshold, policy.max_candidates) == (r["threshold"], r["max_candidates"])
    # the dev traces ship with the head: re-calibration on another machine needs no data set
    assert head.traces["offsets"][-1] == r["dev_positions"] and len(head.traces["pred"]) == r["dev_positions"]
    assert head.training_info["calibration"]["best_fixed_k"] == r["best_fixed_k"]
    assert (cal_dir / "calibration.png").stat().st_size > 1000


def test_measured_costs(ws, trained):
    from hf_specdecpp.core.costs import measure_costs

    d = AutoModelForCausalLM.from_pretrained(ws["draft"]).eval()
    t = AutoModelForCausalLM.from_pretrained(ws["target"]).eval()
    calls = []
    hooks = [m.register_forward_hook(lambda mod, args, kwargs, out, name=name: calls.append(
        (name, kwargs["input_ids"].shape[1])), with_kwargs=True) for name, m in (("draft", d), ("target", t))]
    c = measure_costs(d, t, prompt_length=16, ks=(0, 2, 4), repeats=3, warmup=1)
    for h in hooks:
        h.remove()
    assert c.draft_step_s > 0 and c.c_draft > 0 and c.verify_slope >= 0
    assert c.verify_cost[0] == 1.0 and set(c.verify_cost) == {0, 2, 4}
    assert c.device["device_type"] == "cpu" and c.device["dtype"] == "float32"
    # two prefills, then every repeat (warm-up included) times the draft step and each k once, interleaved
    one_repeat = [("draft", 1), ("target", 1), ("target", 3), ("target", 5)]
    assert calls == [("draft", 16), ("target", 16)] + one_repeat * 4


# ---------------------------------------------------------------------------------------------- CLI + push
def test_cli_end_to_end_with_push(ws, hub_server, tmp_path):
    runner = CliRunner()
    data, head = tmp_path / "data", tmp_path / "head"
    r = runner.invoke(app, ["make-data", str(data), "--draft", ws["draft"], "--target", ws["target"], "--prompts",
                            str(ws["prompts"]), "--max-new-tokens", "16", "--max-prompts", "16", "--shard-size", "8",
                            "--dev-fraction", "0.25"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train", str(data), str(head), "--epochs", "2", "--batch-size", "4", "--num-layers", "2"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["calibrate", str(head), str(data), "--cost-ratio", "0.1", "--verify-slope", "0.01"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["push", str(head), "org/acc-head"])
    assert r.exit_code == 0, r.output
    files = hub_server.state.repos["org/acc-head"].files("main")
    assert {"model.safetensors", "config.json", "README.md", "calibration.png"} <= set(files)
    card = files["README.md"].decode()
    for needle in (ws["draft"], ws["target"], "w_reject = 6.00", "calibrated policy: threshold h", "AUROC", "c = 0.1",
                   "greedy", "candidate_generator=SpecDecPPMethod", "org/acc-head", "2 residual blocks"):
        assert needle in card, needle
    pulled = AcceptanceHead.from_pretrained("org/acc-head")
    local = AcceptanceHead.from_pretrained(str(head))
    assert pulled.policy == local.policy and pulled.policy.cost_ratio == 0.1
    for key, value in local.state_dict().items():
        assert torch.equal(pulled.state_dict()[key], value)


# ---------------------------------------------------------------------------------------------- errors
def test_missing_prompt_file(ws, tmp_path):
    with pytest.raises(TrainingError, match="not found"):
        make_data(tmp_path / "d", **_kw(ws, prompts_file=tmp_path / "nope.jsonl"))
    r = CliRunner().invoke(app, ["make-data", str(tmp_path / "d"), "--draft", ws["draft"], "--target", ws["target"],
                                 "--prompts", str(tmp_path / "nope.jsonl")])
    assert r.exit_code == 1 and "not found" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("bad,lineno", [("{not json", 3), ('{"other": 1}', 3), ('[1, 2]', 3),
                                         ('{"messages": [{"role": "user"}]}', 3)])
def test_malformed_jsonl_names_the_line(ws, tmp_path, bad, lineno):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "w7 w8"}\n\n' + bad + "\n")
    with pytest.raises(TrainingError, match=f"line {lineno}"):
        make_data(tmp_path / "d", **_kw(ws, prompts_file=path))
    assert not (tmp_path / "d").exists()


def test_mismatched_tokenizer_or_vocab(ws, tmp_path):
    t2, d2 = save_tiny_pair(tmp_path / "other_tok", noise=NOISE, tokenizer_vocab_size=90)
    with pytest.raises(TrainingError, match="tokenizer differs"):
        make_data(tmp_path / "d1", **_kw(ws, draft=d2))
    t3, d3 = save_tiny_pair(tmp_path / "other_vocab", noise=NOISE, vocab_size=100)  # its tokenizer has 100 tokens
    with pytest.raises(TrainingError, match="tokenizer differs"):
        make_data(tmp_path / "d2", **_kw(ws, draft=d3))


def test_padded_draft_vocabulary_is_accepted(ws, tmp_path):
    """One tokenizer, output layers padded to different sizes (as Qwen2.5 0.5B and 7B): the data is made over the
    target's vocabulary, and every drafted token is one the target can produce."""
    _, padded_draft = save_tiny_pair(tmp_path / "padded", noise=NOISE, vocab_size=104, tokenizer_vocab_size=96)
    out = make_data(tmp_path / "d", **_kw(ws, draft=padded_draft, max_prompts=8))
    meta = json.loads((out / "metadata.json").read_text())
    assert (meta["vocab_size"], meta["draft_vocab_size"]) == (96, 104)
    drafted = [t for row in load_features(out, "train")["draft_tokens"] for t in row]
    assert drafted and max(drafted) < 96


def test_refuses_to_resume_with_other_settings(ws):
    before = (ws["data"] / "metadata.json").read_text()
    with pytest.raises(TrainingError, match="other models or settings") as err:
        make_data(ws["data"], **_kw(ws, temperature=0.7))
    assert "decoding.temperature" in str(err.value)
    t4, d4 = save_tiny_pair(ws["root"] / "other_seed", noise=NOISE, seed=5)
    with pytest.raises(TrainingError, match="draft.weights_sha"):
        make_data(ws["data"], **_kw(ws, draft=d4, target=ws["target"]))
    assert (ws["data"] / "metadata.json").read_text() == before
    assert len(load_features(ws["data"], "train")) == 48


def test_greedy_target_responses_skip_the_target_pass_with_identical_labels(ws):
    """Greedy labels from the target's own greedy responses equal the labels from an explicit target pass."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_specdecpp.core.pair import VocabMap
    from hf_specdecpp.training.batch_features import generate_responses, process_batch
    from hf_specdecpp.training.labels import DecodingSettings

    draft = AutoModelForCausalLM.from_pretrained(ws["draft"]).eval()
    target = AutoModelForCausalLM.from_pretrained(ws["target"]).eval()
    tok = AutoTokenizer.from_pretrained(ws["target"])
    prompts = [tok(json.loads(l)["prompt"])["input_ids"] for l in ws["prompts"].read_text().splitlines()[:8]]
    settings = DecodingSettings()
    responses = generate_responses(target, prompts, settings, 24, 0, [1], torch.device("cpu"))
    common = dict(settings=settings, mix_ratio=0.15, with_calibration=True, pad_id=0, device=torch.device("cpu"),
                  vocab=VocabMap(96, 96))
    calls = []
    handle = target.register_forward_hook(lambda *a: calls.append(1))
    try:
        fast = process_batch(draft, target, prompts, responses, sample_gen=torch.Generator().manual_seed(0),
                             mix_gen=torch.Generator().manual_seed(1), responses_are_target_argmax=True, **common)
        assert calls == []  # no target forward pass
        full = process_batch(draft, target, prompts, responses, sample_gen=torch.Generator().manual_seed(0),
                             mix_gen=torch.Generator().manual_seed(1), **common)
        assert calls  # the explicit path does run the target
    finally:
        handle.remove()
    for a, b in zip(fast, full):
        np.testing.assert_array_equal(a["calib_labels"], b["calib_labels"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
        assert a["positions"] == b["positions"]


# ---------------------------------------------------------------------------------------------- --head-inputs
def test_producing_state_only_data_has_the_same_producing_columns_and_refuses_reference_heads(ws, tmp_path):
    """`head_inputs="producing_state"` skips the drafted-token passes: the producing-state columns are those of a
    full data set, the drafted-token columns are empty, and a reference head refuses the data by name."""
    lean = make_data(tmp_path / "lean", **_kw(ws, head_inputs="producing_state"))
    assert read_metadata(lean)["head_inputs"] == "producing_state"
    for split in ("train", "dev"):
        full = load_features(ws["data"], split).with_format("numpy")
        part = load_features(lean, split).with_format("numpy")
        assert list(full["prompt_index"]) == list(part["prompt_index"])
        assert "calib_hidden" not in part.column_names
        for a, b in zip(full, part):
            for column in ("context_labels", "context_features", "draft_tokens", "response_tokens"):
                np.testing.assert_array_equal(a[column], b[column])
            np.testing.assert_array_equal(a["context_hidden"], b["context_hidden"])
            assert len(b["positions"]) == len(b["labels"]) == len(b["hidden"]) == 0
    head = train_head(lean, tmp_path / "head", epochs=1, batch_size=8, input_state="producing_state",
                      use_confidence_features=True, show_progress=False)
    result = calibrate_head(tmp_path / "head", lean, cost_ratio=0.3, max_candidates=4, plot=False,
                            show_progress=False)
    assert 0 < result["threshold"] < 1 and head is not None
    with pytest.raises(TrainingError, match="--head-inputs producing_state.*--input-state producing_state"):
        train_head(lean, tmp_path / "reference", epochs=1, show_progress=False)
    with pytest.raises(TrainingError, match="head_inputs"):
        make_data(tmp_path / "bad", **_kw(ws, head_inputs="hidden"))


def test_auto_dtype_is_bfloat16_only_where_the_cpu_has_native_bf16(monkeypatch):
    from hf_specdecpp.core import device as device_module
    from hf_specdecpp.training.common import pick_dtype

    for name, native in (("AMD EPYC [avx2 avx512f avx512_bf16]", True), ("Intel Xeon [avx512f amx_bf16]", True),
                         ("Intel Xeon [avx2 avx512f]", False), ("Apple M2", False)):
        assert device_module.cpu_has_native_bf16(name) is native, name
    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(device_module, "native_bf16_cpu", lambda native=native: native)
        assert pick_dtype("auto", torch.device("cpu")) == expected
        assert pick_dtype(None, torch.device("cpu")) == expected
        assert pick_dtype("float32", torch.device("cpu")) == torch.float32
