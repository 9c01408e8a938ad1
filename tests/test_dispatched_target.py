"""A target dispatched by accelerate (`device_map` with a layer offloaded to disk: parameters on the meta device,
hooks that move weights and inputs at each forward) works on every route, as a sharded `device_map="auto"` target
does on GPUs: nothing in the loops assumes one device or reads the device from the first parameter."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("accelerate")
from transformers import AutoModelForCausalLM  # noqa: E402

from hf_specdecpp import DySpecCandidateGenerator, SpecDecPPCandidateGenerator  # noqa: E402
from hf_specdecpp.testing import save_tiny_pair, tiny_head  # noqa: E402

DEVICE_MAP = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk", "model.norm": "cpu",
              "model.rotary_emb": "cpu", "lm_head": "cpu"}
OFFLOADED_EMBEDDING = dict(DEVICE_MAP, **{"model.embed_tokens": "disk", "model.layers.1": "cpu"})
"""The input embedding offloaded: the first parameter is on the meta device, the inputs still go to the CPU."""
GREEDY = dict(max_new_tokens=20, do_sample=False, pad_token_id=0)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pair")
    target_path, draft_path = save_tiny_pair(directory)
    plain = AutoModelForCausalLM.from_pretrained(target_path, dtype=torch.float32)
    dispatched = AutoModelForCausalLM.from_pretrained(target_path, dtype=torch.float32, device_map=DEVICE_MAP,
                                                      offload_folder=str(directory / "offload"))
    draft = AutoModelForCausalLM.from_pretrained(draft_path, dtype=torch.float32)
    assert "disk" in dispatched.hf_device_map.values()
    assert any(p.device.type == "meta" for p in dispatched.parameters())
    return plain, dispatched, draft


def _reference(plain, ids, mask):
    return plain.generate(ids, attention_mask=mask, **GREEDY)


@pytest.mark.parametrize("route", ["candidate_generator", "custom_generate", "tree"])
def test_a_dispatched_target_gives_the_target_alone_output(models, route):
    plain, dispatched, draft = models
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    mask = torch.ones_like(ids)
    if route == "candidate_generator":
        method = SpecDecPPCandidateGenerator(head=tiny_head(), threshold=0.5)
        out = dispatched.generate(ids, attention_mask=mask, assistant_model=draft, candidate_generator=method,
                                  **GREEDY)
    elif route == "custom_generate":
        method = SpecDecPPCandidateGenerator(head=tiny_head(), threshold=0.5, draft_model=draft)
        out = dispatched.generate(ids, attention_mask=mask, custom_generate=method, **GREEDY)
    else:
        method = DySpecCandidateGenerator(budget=6)
        out = dispatched.generate(ids, attention_mask=mask, assistant_model=draft, candidate_generator=method,
                                  **GREEDY)
    assert torch.equal(out, _reference(plain, ids, mask))
    assert method.stats.rounds > 1


def test_a_dispatched_target_in_a_batch_gives_each_rows_own_output(models):
    plain, dispatched, draft = models
    rows = [[1, 5, 9, 13], [4, 8, 15, 16, 23, 42 % 90]]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = (torch.arange(width) >= torch.tensor([[width - len(r)] for r in rows])).long()
    method = SpecDecPPCandidateGenerator(head=tiny_head(), threshold=0.5)
    out = dispatched.generate(ids, attention_mask=mask, assistant_model=draft, candidate_generator=method, **GREEDY)
    for i, row in enumerate(rows):
        alone = _reference(plain, torch.tensor([row]), torch.ones(1, len(row), dtype=torch.long))
        got = out[i, width:]
        want = alone[0, len(row):]
        assert got[:len(want)].tolist() == want.tolist()


@pytest.fixture(scope="module")
def offloaded_embedding(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pair")
    target_path, draft_path = save_tiny_pair(directory)
    plain = AutoModelForCausalLM.from_pretrained(target_path, dtype=torch.float32)
    kwargs = dict(dtype=torch.float32, device_map=OFFLOADED_EMBEDDING, offload_folder=str(directory / "offload"))
    target = AutoModelForCausalLM.from_pretrained(target_path, **kwargs)
    draft = AutoModelForCausalLM.from_pretrained(draft_path, **dict(kwargs, offload_folder=str(directory / "o2")))
    for model in (target, draft):
        assert next(model.parameters()).device.type == "meta"  # what reading the first parameter would give
    return plain, target, draft


def test_the_input_device_of_a_dispatched_model_is_where_its_embedding_runs(offloaded_embedding):
    from hf_specdecpp.core.device import DeviceKind, input_device

    _, target, draft = offloaded_embedding
    assert input_device(target) == torch.device("cpu") == input_device(draft)
    assert DeviceKind.of(draft).device_type == "cpu"


@pytest.mark.parametrize("route", [
    "custom_generate", "batch",
    "tree",
])
def test_a_first_parameter_on_the_meta_device_is_not_the_device(offloaded_embedding, route):
    """Regression: the loops read the device from the first parameter (meta here) and built tensors there."""
    plain, target, draft = offloaded_embedding
    rows = [[1, 5, 9, 13, 2, 7]] if route != "batch" else [[1, 5, 9, 13], [4, 8, 15, 16, 23, 42]]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = (torch.arange(width) >= torch.tensor([[width - len(r)] for r in rows])).long()
    if route == "tree":
        method = DySpecCandidateGenerator(budget=6, draft_model=draft)
    else:
        method = SpecDecPPCandidateGenerator(head=tiny_head(), threshold=0.5, draft_model=draft)
    out = target.generate(ids, attention_mask=mask, custom_generate=method, **GREEDY)
    for i, row in enumerate(rows):
        alone = _reference(plain, torch.tensor([row]), torch.ones(1, len(row), dtype=torch.long))
        assert out[i, width:width + alone.shape[1] - len(row)].tolist() == alone[0, len(row):].tolist()
    assert method.stats.rounds > 1
