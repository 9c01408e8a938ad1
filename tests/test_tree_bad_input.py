"""Bad input to DySpec gets a clear error, before any generation where possible."""

import pytest
import torch
from transformers import AutoModelForCausalLM, BloomConfig, GPT2Config

from hf_specdecpp import AcceptanceHead, DySpecCandidateGenerator
from hf_specdecpp.integration import generate_patch
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


def tiny_bloom():
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(BloomConfig(vocab_size=96, hidden_size=32, n_layer=1, n_head=2,
                                                        bos_token_id=0, eos_token_id=1)).eval()


def test_architectures_are_probed_not_listed():
    """Any architecture that reads a prepared 4D tree mask with per-token positions works (GPT-2 here: neither
    Llama nor Qwen2), with output equal to the target alone."""
    target, draft = tiny_gpt2(), tiny_gpt2()
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    reference = target.generate(IDS, max_new_tokens=12, do_sample=False, pad_token_id=0)
    out = target.generate(IDS, assistant_model=draft, candidate_generator=DySpecCandidateGenerator(budget=4),
                          max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(out, reference)


def test_an_architecture_that_cannot_read_a_tree_names_what_is_missing(pair):
    bloom = tiny_bloom()  # ALiBi attention: it cannot take the tree mask
    message = r"cannot use the (target|draft) model \(BloomForCausalLM\): it cannot read a token tree in one pass"
    calls, handle = count_forwards(bloom)
    try:
        with pytest.raises(ValueError, match=message) as error:
            bloom.generate(IDS, assistant_model=tiny_bloom(), candidate_generator=DySpecCandidateGenerator(budget=4),
                           max_new_tokens=4)
        assert "4D attention mask" in str(error.value) and "position ids" in str(error.value)
        assert "Chain methods" in str(error.value)
        with pytest.raises(ValueError, match=message):
            bloom.generate(IDS, custom_generate=DySpecCandidateGenerator(budget=4, draft_model=tiny_bloom()),
                           max_new_tokens=4)
    finally:
        handle.remove()
    assert len(calls) == 1  # the probe's pass over a prefix (its tree pass failed); no generation


def test_attention_implementation_without_custom_masks(pair):
    target, draft = pair
    torch.manual_seed(0)
    flex = AutoModelForCausalLM.from_config(tiny_config("qwen2")).eval()
    flex.set_attn_implementation("flex_attention")
    with pytest.raises(ValueError, match=r"flex_attention|4D attention mask"):
        target.generate(IDS, assistant_model=flex, candidate_generator=DySpecCandidateGenerator(budget=4),
                        max_new_tokens=4)


def test_sliding_window_layers(pair):
    _, draft = pair
    torch.manual_seed(0)
    sliding = AutoModelForCausalLM.from_config(
        tiny_config("qwen2", use_sliding_window=True, sliding_window=4, max_window_layers=0)
    ).eval()
    with pytest.raises(ValueError, match="sliding window"):
        sliding.generate(IDS, assistant_model=draft, candidate_generator=DySpecCandidateGenerator(budget=4),
                         max_new_tokens=4)


def test_batch_larger_than_one(pair):
    target, draft = pair
    batch = torch.tensor([[2, 5, 6, 7], [3, 4, 5, 6]])
    for route, generator in (("candidate_generator", DySpecCandidateGenerator(budget=4)),
                             ("custom_generate", DySpecCandidateGenerator(budget=4, draft_model=draft))):
        with pytest.raises(ValueError, match="one sequence per call"):
            target.generate(batch, attention_mask=torch.ones_like(batch),
                            assistant_model=draft if route == "candidate_generator" else None,
                            **{route: generator}, max_new_tokens=4)
    assert generate_patch.active_call() is None


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


def test_a_tree_method_is_never_given_to_the_chain_verifier(pair):
    """transformers' assisted decoding verifies chains only: the patch routes tree methods to their own loop and
    never builds a CandidateGenerator from them."""
    from transformers.generation.candidate_generator import CandidateGenerator

    target, draft = pair
    generator = DySpecCandidateGenerator(budget=4)
    assert generator.kind == "tree" and not isinstance(generator, CandidateGenerator)
    assert not hasattr(generator, "new_candidate_generator")
    out = target.generate(IDS, assistant_model=draft, candidate_generator=generator, max_new_tokens=6,
                          do_sample=False, return_dict_in_generate=True)
    assert out.speculation_stats.tree_sizes


def test_draft_only_in_generator_is_enough(pair):
    target, draft = pair
    reference = target.generate(IDS, max_new_tokens=8, do_sample=False)
    out = target.generate(IDS, candidate_generator=DySpecCandidateGenerator(budget=4, draft_model=draft),
                          max_new_tokens=8, do_sample=False)
    assert torch.equal(out, reference)
