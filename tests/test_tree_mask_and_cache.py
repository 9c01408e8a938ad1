"""Tree attention and cache compaction against plain forward passes (float32, Llama and Qwen2, eager and SDPA)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, GenerationConfig, LogitsProcessorList, StoppingCriteriaList

from hf_specdecpp import DySpecCandidateGenerator
from hf_specdecpp.core.cache import compact
from hf_specdecpp.core.chain import CallContext
from hf_specdecpp.core.chain import Rows
from hf_specdecpp.core.compat import output_cache
from hf_specdecpp.core.drafting import ModelSession
from hf_specdecpp.methods.dyspec.loop import TreeRound, tree_pass
from hf_specdecpp.methods.dyspec.tree import DraftTree, HostTree
from hf_specdecpp.testing import tiny_config, tiny_pair

PROMPT = torch.tensor([[2, 5, 6, 7, 8, 9, 10]])
ATOL = 1e-5


def sample_tree(root: int) -> tuple[DraftTree, HostTree]:
    """A tree with several children per node, depth 3, and repeated tokens on different branches."""
    tree = DraftTree(torch.tensor(root))

    def add(parent: int, tokens: list[int]) -> list[int]:
        n = len(tokens)
        values = torch.linspace(0.5, 0.1, n)[None] * 0.9 ** tree.depths[parent].item()
        return tree.add_children(torch.tensor([parent]), torch.tensor([tokens]), values, values, values)[0].tolist()

    a, b, _ = add(0, [11, 12, 13])
    a1, _ = add(a, [20, 12])
    add(b, [20])
    add(a1, [30, 31])
    return tree, HostTree(tree, torch.ones(tree.num_nodes, dtype=torch.bool))


@pytest.fixture(scope="module", params=[(arch, attn) for arch in ("llama", "qwen2") for attn in ("sdpa", "eager")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def model(request):
    arch, attn = request.param
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(arch), attn_implementation=attn).eval()


def plain_next_logits(model, ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, attention_mask=attention_mask).logits[0, -1].float()


def context(model) -> CallContext:
    return CallContext.create(model, model, GenerationConfig(max_length=64, do_sample=False), LogitsProcessorList())


def run_tree_pass(model, layout, length, cached: int):
    tree, host = sample_tree(int(layout[0, -1]))
    session = ModelSession(model, "target", 1)
    if cached:  # part of the prefix is in the cache already
        session.align([cached], cached)
        _, positions = session.feed_layout(cached, [cached])
        with torch.no_grad():
            session.forward(layout[:, -length:][:, :cached], positions, None, 1)
        session.cached = [cached]
    drafted = host.index[1:]
    with torch.no_grad():
        logits = tree_pass(context(model), session, host, tree.ancestors[drafted][:, drafted], layout, length)
    return logits, host, session


@pytest.mark.parametrize("cached", [0, 4, 6], ids=lambda c: f"cached{c}")
def test_tree_logits_equal_path_forwards(model, cached):
    """Logits at every node equal a plain forward over prefix + root-to-node path, with or without a cache."""
    logits, host, session = run_tree_pass(model, PROMPT, PROMPT.shape[1], cached)
    assert logits.shape[0] == len(host.nodes) == 9
    assert session.cache.get_seq_length() == PROMPT.shape[1] + host.num_drafted
    for i in range(len(host.nodes)):
        path = torch.tensor([host.path_tokens(i)], dtype=torch.long)
        expected = plain_next_logits(model, torch.cat([PROMPT, path], dim=-1))
        torch.testing.assert_close(logits[i], expected, atol=ATOL, rtol=0)


def test_tree_logits_with_left_padding(model):
    """A padded prompt: padded positions are invisible and position ids count real tokens only."""
    padded = torch.cat([torch.zeros(1, 2, dtype=torch.long), PROMPT], dim=-1)
    logits, host, _ = run_tree_pass(model, padded, PROMPT.shape[1], 0)
    for i in (0, 4, 7):
        path = torch.tensor([host.path_tokens(i)], dtype=torch.long)
        expected = plain_next_logits(model, torch.cat([PROMPT, path], dim=-1))
        torch.testing.assert_close(logits[i], expected, atol=ATOL, rtol=0)


def test_compact_keeps_selected_positions():
    from transformers import DynamicCache

    cache = DynamicCache()
    keys = torch.arange(2 * 1 * 6 * 3, dtype=torch.float32).reshape(1, 2, 6, 3)
    cache.update(keys, -keys, layer_idx=0)
    compact(cache, 2, [4])
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
    from hf_specdecpp.core.compat import cache_argument, cache_layers

    length = cache.get_seq_length()
    with torch.no_grad():
        fresh = output_cache(model(sequence[:, :length], use_cache=True))
    for layer, fresh_layer in zip(cache_layers(cache), cache_layers(fresh)):
        torch.testing.assert_close(layer.keys, fresh_layer.keys, atol=ATOL, rtol=0)
        torch.testing.assert_close(layer.values, fresh_layer.values, atol=ATOL, rtol=0)
    with torch.no_grad():
        from_cache = model(sequence[:, length:], use_cache=True, **{cache_argument(model): cache}).logits[0, -1]
    torch.testing.assert_close(from_cache, plain_next_logits(model, sequence), atol=ATOL, rtol=0)


@pytest.mark.parametrize("do_sample", [False, True], ids=["greedy", "sampling"])
def test_compacted_caches_equal_fresh_forward(sharp_pair, do_sample):
    """After many rounds with rejected branches, both caches hold exactly the accepted sequence."""
    from hf_specdecpp.core.chain import Rows  # noqa: F401  (the loop's row bookkeeping, used by tree_decode)
    from hf_specdecpp.methods.dyspec.config import DySpecConfig
    from hf_specdecpp.methods.dyspec.loop import tree_decode

    target, draft = sharp_pair
    config = GenerationConfig(max_length=PROMPT.shape[1] + 24, do_sample=do_sample, eos_token_id=None)
    ctx = CallContext.create(target, draft, config, LogitsProcessorList())
    torch.manual_seed(0)
    result = tree_decode(ctx, DySpecConfig(budget=8), None, PROMPT, None, StoppingCriteriaList())
    sequence, stats = result.sequences, result.stats
    assert stats.rounds > 2 and sum(stats.tree_sizes) > stats.accepted_tokens  # some nodes were dropped
    assert result.cache.get_seq_length() == sequence.shape[1] - 1
    assert_cache_matches_fresh(target, result.cache, sequence)
    assert 0 < result.draft_cache.get_seq_length() < sequence.shape[1]
    assert_cache_matches_fresh(draft, result.draft_cache, sequence)


def test_draft_node_distributions_equal_path_forwards(sharp_pair):
    """The draft reads tree nodes level by level over its cache with tree masks: its distribution at every node it
    read equals a plain forward over prefix + path."""
    target, draft = sharp_pair
    ctx = CallContext.create(target, draft, GenerationConfig(max_length=64, do_sample=False), LogitsProcessorList())
    generator = DySpecCandidateGenerator(budget=12)
    grower = TreeRound(ctx, generator.config, None)
    grown = grower.grow(Rows.start(PROMPT, None), PROMPT, PROMPT.shape[1], PROMPT[0])
    host = grown.host
    read = [i for i in range(len(host.nodes)) if i == 0 or host.slots[i] >= 0]
    assert len(read) > 1 and max(host.depths) >= 2 and max(len(c) for c in host.children) >= 2
    assert grower.session.forwards <= max(host.depths) + 1  # one draft pass per level
    for i in read:
        path = torch.tensor([host.path_tokens(i)], dtype=torch.long)
        expected = plain_next_logits(draft, torch.cat([PROMPT, path], dim=-1)).softmax(-1)
        torch.testing.assert_close(grown.draft_probs[i], expected, atol=ATOL, rtol=0)
