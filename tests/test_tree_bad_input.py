"""Bad input to DySpec gets a clear error, before any generation where possible."""

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

from hf_specdecpp import AcceptanceHead, DySpecCandidateGenerator
from hf_specdecpp.inference import generate_patch
from hf_specdecpp.testing import tiny_config, tiny_pair

IDS = torch.tensor([[2, 5, 6, 7]])


@pytest.fixture(scope="module")
def pair():
    return tiny_pair("qwen2", noise=0.02, seed=2)


def count_forwards(model):
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("budget", [0, -3, 2.5, True, "8"])
def test_budget_must_be_a_positive_integer(budget):
    with pytest.raises(ValueError, match="budget must be an integer >= 1"):
        DySpecCandidateGenerator(budget=budget)


@pytest.mark.parametrize("max_depth", [0, -1, 1.5])
def test_max_depth(max_depth):
    with pytest.raises(ValueError, match="max_depth"):
        DySpecCandidateGenerator(budget=4, max_depth=max_depth)


@pytest.mark.parametrize("cost_ratio", [0, -0.5, "0.1", True])
def test_cost_ratio(cost_ratio):
    with pytest.raises(ValueError, match="cost_ratio"):
        DySpecCandidateGenerator(budget=4, cost_ratio=cost_ratio)


def test_head_type_and_size(pair):
    _, draft = pair
    with pytest.raises(TypeError, match="AcceptanceHead"):
        DySpecCandidateGenerator(head="org/head-repo")
    with pytest.raises(ValueError, match=r"hidden size 48.*hidden size 32"):
        DySpecCandidateGenerator(head=AcceptanceHead(48, 1), draft_model=draft)


def tiny_gpt2():
    config = GPT2Config(vocab_size=96, n_embd=32, n_layer=1, n_head=2, n_positions=64, bos_token_id=0,
                        eos_token_id=1)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def test_unsupported_architecture_names_what_is_missing(pair):
    target, draft = pair
    gpt2 = tiny_gpt2()
    message = r"supports llama, qwen2 architectures; the (target|draft) model \(GPT2LMHeadModel, model_type 'gpt2'\)"
    calls, handle = count_forwards(gpt2)
    try:
        with pytest.raises(ValueError, match=message) as error:
            gpt2.generate(IDS, assistant_model=tiny_gpt2(), candidate_generator=DySpecCandidateGenerator(budget=4),
                          max_new_tokens=4)
        assert "4D tree attention mask" in str(error.value) and "position ids" in str(error.value)
        with pytest.raises(ValueError, match=message):
            gpt2.generate(IDS, custom_generate=DySpecCandidateGenerator(budget=4, draft_model=tiny_gpt2()),
                          max_new_tokens=4)
    finally:
        handle.remove()
    assert calls == []
    with pytest.raises(ValueError, match="the draft model"):  # a supported target with an unsupported draft
        DySpecCandidateGenerator(budget=4, draft_model=gpt2)


def test_attention_implementation_without_custom_masks(pair):
    target, draft = pair
    torch.manual_seed(0)
    flex = AutoModelForCausalLM.from_config(tiny_config("qwen2")).eval()
    flex.set_attn_implementation("flex_attention")
    with pytest.raises(ValueError, match=r"'flex_attention' attention.*attn_implementation='sdpa' or 'eager'"):
        target.generate(IDS, assistant_model=flex, candidate_generator=DySpecCandidateGenerator(budget=4),
                        max_new_tokens=4)


def test_sliding_window_layers(pair):
    _, draft = pair
    torch.manual_seed(0)
    sliding = AutoModelForCausalLM.from_config(
        tiny_config("qwen2", use_sliding_window=True, sliding_window=4, max_window_layers=0)
    ).eval()
    with pytest.raises(ValueError, match="sliding-window"):
        sliding.generate(IDS, assistant_model=draft, candidate_generator=DySpecCandidateGenerator(budget=4),
                         max_new_tokens=4)


def test_batch_larger_than_one(pair):
    target, draft = pair
    batch = torch.tensor([[2, 5, 6, 7], [3, 4, 5, 6]])
    for route, generator in (("candidate_generator", DySpecCandidateGenerator(budget=4)),
                             ("custom_generate", DySpecCandidateGenerator(budget=4, draft_model=draft))):
        with pytest.raises(ValueError, match="batch size 1"):
            target.generate(batch, assistant_model=draft if route == "candidate_generator" else None,
                            **{route: generator}, max_new_tokens=4)
        generator.acquire()  # released after the error
        generator.release()
    assert generate_patch.active_candidate_generator() is None


def test_no_draft_anywhere(pair):
    target, _ = pair
    with pytest.raises(ValueError, match="needs a draft model"):
        target.generate(IDS, candidate_generator=DySpecCandidateGenerator(budget=4), max_new_tokens=4)
    with pytest.raises(ValueError, match="give the draft to the generator"):
        target.generate(IDS, custom_generate=DySpecCandidateGenerator(budget=4), max_new_tokens=4)


def test_both_front_doors_at_once(pair):
    target, draft = pair
    generator = DySpecCandidateGenerator(budget=4, draft_model=draft)
    with pytest.raises(ValueError, match="either candidate_generator= or custom_generate="):
        target.generate(IDS, candidate_generator=generator, custom_generate=generator, max_new_tokens=4)


def test_chain_verifier_refuses_a_tree_generator(pair):
    """transformers' assisted decoding verifies chains only: a tree generator must never be used as one."""
    target, draft = pair
    with pytest.raises(RuntimeError, match="drafts a tree"):
        DySpecCandidateGenerator(budget=4).get_candidates(IDS)


def test_draft_only_in_generator_is_enough(pair):
    target, draft = pair
    reference = target.generate(IDS, max_new_tokens=8, do_sample=False)
    out = target.generate(IDS, candidate_generator=DySpecCandidateGenerator(budget=4, draft_model=draft),
                          max_new_tokens=8, do_sample=False)
    assert torch.equal(out, reference)
