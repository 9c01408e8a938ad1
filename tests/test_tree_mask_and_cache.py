"""Tree attention and cache compaction against plain forward passes (float32, Llama and Qwen2, eager and SDPA)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache, GenerationConfig

from hf_specdecpp import DySpecCandidateGenerator
from hf_specdecpp.inference.tree import DraftTree, tree_logits
from hf_specdecpp.inference.tree.cache import compact_cache
from hf_specdecpp.testing import tiny_config, tiny_pair

PROMPT = torch.tensor([[2, 5, 6, 7, 8, 9, 10]])
ATOL = 1e-5


def sample_tree(root: int) -> DraftTree:
    """A tree with several children per node, depth 3, and repeated tokens on different branches."""
    tree = DraftTree(root)
    a = tree.add(0, 11, 0.5)
    b = tree.add(0, 12, 0.3)
    tree.add(0, 13, 0.1)
    a1 = tree.add(a, 20, 0.4)
    tree.add(a, 12, 0.05)
    tree.add(b, 20, 0.2)
    tree.add(a1, 30, 0.3)
    tree.add(a1, 31, 0.05)
    return tree


@pytest.fixture(scope="module", params=[(arch, attn) for arch in ("llama", "qwen2") for attn in ("sdpa", "eager")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def model(request):
    arch, attn = request.param
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(arch), attn_implementation=attn).eval()


def plain_next_logits(model, ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, attention_mask=attention_mask).logits[0, -1].float()


@pytest.mark.parametrize("cached", [0, 4, 6], ids=lambda c: f"cached{c}")
def test_tree_logits_equal_path_forwards(model, cached):
    """Logits at every node equal a plain forward over prefix + root-to-node path, with or without a cache."""
    tree = sample_tree(int(PROMPT[0, -1]))
    cache = DynamicCache(config=model.config)
    if cached:
        with torch.no_grad():
            model(PROMPT[:, :cached], past_key_values=cache, use_cache=True)
    with torch.no_grad():
        logits = tree_logits(model, PROMPT, tree, cache)
    assert logits.shape[0] == tree.num_nodes + 1
    assert cache.get_seq_length() == PROMPT.shape[1] + tree.num_nodes
    for node in range(tree.num_nodes + 1):
        path = torch.tensor([tree.path_tokens(node)], dtype=torch.long)
        expected = plain_next_logits(model, torch.cat([PROMPT, path], dim=-1))
        torch.testing.assert_close(logits[node], expected, atol=ATOL, rtol=0)


def test_tree_logits_with_left_padding(model):
    """A padded prompt: padded positions are invisible and position ids count real tokens only."""
    tree = sample_tree(int(PROMPT[0, -1]))
    padded = torch.cat([torch.zeros(1, 2, dtype=torch.long), PROMPT], dim=-1)
    mask = torch.cat([torch.zeros(1, 2, dtype=torch.long), torch.ones_like(PROMPT)], dim=-1)
    with torch.no_grad():
        logits = tree_logits(model, padded, tree, DynamicCache(config=model.config), padding_mask=mask)
    for node in (0, 4, 7):
        path = torch.tensor([tree.path_tokens(node)], dtype=torch.long)
        expected = plain_next_logits(model, torch.cat([PROMPT, path], dim=-1))
        torch.testing.assert_close(logits[node], expected, atol=ATOL, rtol=0)


def test_compact_cache_keeps_selected_positions():
    cache = DynamicCache()
    keys = torch.arange(2 * 1 * 6 * 3, dtype=torch.float32).reshape(1, 2, 6, 3)
    cache.update(keys, -keys, layer_idx=0)
    compact_cache(cache, torch.tensor([0, 1, 4]))
    assert cache.get_seq_length() == 3
    torch.testing.assert_close(cache.layers[0].keys, keys[:, :, [0, 1, 4]])
    torch.testing.assert_close(cache.layers[0].values, -keys[:, :, [0, 1, 4]])


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def sharp_pair(request):
    target, draft = tiny_pair(request.param, noise=0.05, seed=1)
    with torch.no_grad():  # peaked distributions: deep trees and long accepted paths
        target.get_output_embeddings().weight.mul_(6.0)
        draft.get_output_embeddings().weight.mul_(6.0)
    return target, draft


def assert_cache_matches_fresh(model, cache, sequence: torch.Tensor) -> None:
    """The cache holds exactly `sequence`'s keys/values, and the next-token logits from it equal a fresh pass."""
    length = cache.get_seq_length()
    with torch.no_grad():
        fresh = model(sequence[:, :length], use_cache=True).past_key_values
    for layer, fresh_layer in zip(cache.layers, fresh.layers):
        torch.testing.assert_close(layer.keys, fresh_layer.keys, atol=ATOL, rtol=0)
        torch.testing.assert_close(layer.values, fresh_layer.values, atol=ATOL, rtol=0)
    with torch.no_grad():
        from_cache = model(sequence[:, length:], past_key_values=cache, use_cache=True).logits[0, -1]
    torch.testing.assert_close(from_cache, plain_next_logits(model, sequence), atol=ATOL, rtol=0)


@pytest.mark.parametrize("do_sample", [False, True], ids=["greedy", "sampling"])
def test_compacted_caches_equal_fresh_forward(sharp_pair, do_sample):
    """After many rounds with rejected branches, both caches hold exactly the accepted sequence."""
    target, draft = sharp_pair
    generator = DySpecCandidateGenerator(budget=8, draft_model=draft)
    torch.manual_seed(0)
    out = target.generate(PROMPT, custom_generate=generator, max_new_tokens=24, do_sample=do_sample,
                          return_dict_in_generate=True)
    sequence = out.sequences
    stats = generator.stats
    assert stats.rounds > 2 and sum(stats.tree_sizes) > stats.accepted_tokens  # some nodes were dropped
    assert out.past_key_values.get_seq_length() == sequence.shape[1] - 1
    assert_cache_matches_fresh(target, out.past_key_values, sequence)
    draft_cache = generator.assistant_kwargs["past_key_values"]
    assert 0 < draft_cache.get_seq_length() < sequence.shape[1]
    assert_cache_matches_fresh(draft, draft_cache, sequence)


def test_draft_node_distributions_equal_path_forwards(sharp_pair):
    """The draft reads tree nodes one by one over its cache with tree masks: its distribution at every expanded
    node equals a plain forward over prefix + path."""
    target, draft = sharp_pair
    config = GenerationConfig(max_length=64, do_sample=False)
    generator = DySpecCandidateGenerator(budget=12, draft_model=draft)
    generator.bind(target, PROMPT, None, config, {}, PROMPT, None)
    tree = generator.grow(PROMPT)
    expanded = [node for node, probs in enumerate(tree.probs) if probs is not None]
    assert len(expanded) == generator.stats.draft_forwards == tree.num_nodes  # all but the last node are read
    assert max(tree.depths) >= 2 and max(len(children) for children in tree.children) >= 2
    for node in expanded:
        path = torch.tensor([tree.path_tokens(node)], dtype=torch.long)
        expected = plain_next_logits(draft, torch.cat([PROMPT, path], dim=-1)).softmax(-1)
        torch.testing.assert_close(tree.probs[node], expected, atol=ATOL, rtol=0)
