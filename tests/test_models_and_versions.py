"""The models and transformers releases users have: sliding windows, hybrid caches, padded vocabularies,
architectures beyond Llama/Qwen2, static caches, and clear refusals of what cannot work.

Every generation check compares with the target's own greedy output in float32, through both front doors.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaForCausalLM

import hf_specdecpp
from hf_specdecpp import DySpecCandidateGenerator, FixedLengthCandidateGenerator, SpecDecPPCandidateGenerator
from hf_specdecpp.testing import tiny_config, tiny_pair

from helpers import random_head

LONG = [[2] + list(range(5, 17)), [3, 40, 41, 42, 43, 12, 13, 14, 15, 16, 17, 18, 19, 20]]  # past a window of 4
ROUTES = ("candidate_generator", "custom_generate")


def sharpen(target, draft, factor: float = 6.0):
    with torch.no_grad():  # peaked distributions: long accepted runs, rejections still happen
        target.get_output_embeddings().weight.mul_(factor)
        draft.get_output_embeddings().weight.mul_(factor)
    return target, draft


def run(target, draft, method_factory, route: str, ids, **kwargs):
    method = method_factory(draft if route == "custom_generate" else None)
    extra = {"assistant_model": draft} if route == "candidate_generator" else {}
    return target.generate(ids, **{route: method}, **extra, **kwargs), method


def chain_method(draft_model=None):
    return SpecDecPPCandidateGenerator(head=random_head(32, seed=3), threshold=0.6, max_candidates=6,
                                       draft_model=draft_model)


def assert_equal_to_target(target, draft, method_factory, prompts=LONG, max_new_tokens=24, **kwargs):
    for prompt in prompts:
        ids = torch.tensor([prompt])
        reference = target.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, **kwargs)
        for route in ROUTES:
            out, method = run(target, draft, method_factory, route, ids, max_new_tokens=max_new_tokens,
                              do_sample=False, **kwargs)
            assert torch.equal(out, reference), (route, prompt)
            assert method.stats.rounds > 1 and method.stats.accepted_tokens > 0


# ---------------------------------------------------------------------------------------------- sliding windows
SLIDING = {
    "mistral": dict(sliding_window=4),
    "phi3": dict(sliding_window=4),
    "gemma2": dict(sliding_window=4),  # alternating local / global layers
    "gemma3_text": dict(sliding_window=4, layer_types=["sliding_attention", "full_attention"]),
    "qwen2": dict(use_sliding_window=True, sliding_window=4, max_window_layers=1),
    "qwen3": dict(use_sliding_window=True, sliding_window=4, max_window_layers=1),
}


@pytest.mark.parametrize("arch", list(SLIDING))
def test_sliding_window_pairs_past_the_window(arch):
    target, draft = sharpen(*tiny_pair(arch, noise=0.03, seed=1, **SLIDING[arch]))
    assert_equal_to_target(target, draft, chain_method)


@pytest.mark.parametrize("arch", ["mistral", "gemma2"])
def test_sliding_window_batch(arch):
    """Rows of different lengths, every row past its window: each equals that row decoded alone."""
    target, draft = sharpen(*tiny_pair(arch, noise=0.03, seed=1, **SLIDING[arch]))
    width = max(map(len, LONG))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in LONG])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in LONG])
    out = target.generate(ids, attention_mask=mask, assistant_model=draft, candidate_generator=chain_method(),
                          max_new_tokens=16, do_sample=False)
    for row, prompt in enumerate(LONG):
        alone = target.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False)[0, len(prompt):]
        assert torch.equal(out[row, width: width + len(alone)], alone), row


def test_a_window_smaller_than_a_round():
    """A window of 2 with 6 candidates per round: rejected candidates reach across the whole window."""
    target, draft = sharpen(*tiny_pair("mistral", noise=0.03, seed=2, sliding_window=2))
    assert_equal_to_target(target, draft, lambda d=None: FixedLengthCandidateGenerator(6, draft_model=d))


# ---------------------------------------------------------------------------------------------- hybrid caches
HYBRID = dict(layer_types=["conv", "full_attention", "conv"], num_layers=3)


def test_hybrid_convolution_and_attention_models():
    """LFM2-style layers keep a convolution state: rolled back through transformers' past recording."""
    target, draft = sharpen(*tiny_pair("lfm2", noise=0.03, seed=1, **HYBRID))
    assert_equal_to_target(target, draft, chain_method)


def test_hybrid_models_refuse_batches_and_trees_clearly():
    target, draft = tiny_pair("lfm2", noise=0.03, seed=1, **HYBRID)
    batch = torch.tensor([[2, 5, 6, 7], [3, 4, 5, 6]])
    with pytest.raises(ValueError, match=r"\['LinearAttentionLayer'\] states.*Call generate\(\) once per prompt"):
        target.generate(batch, attention_mask=torch.ones_like(batch), assistant_model=draft,
                        candidate_generator=chain_method(), max_new_tokens=4)
    with pytest.raises(ValueError, match="cannot be gathered.*chain methods"):
        target.generate(batch[:1], assistant_model=draft, candidate_generator=DySpecCandidateGenerator(budget=4),
                        max_new_tokens=4)


# ---------------------------------------------------------------------------------------------- recurrent states
RECURRENT_HISTORY = hasattr(__import__("transformers").DynamicCache, "get_recurrent_states_to_keep")  # 5.25+
GATED_DELTA = dict(layer_types=["linear_attention", "full_attention"])


@pytest.mark.skipif(not RECURRENT_HISTORY, reason="recurrent states keep a history from transformers 5.25")
def test_recurrent_linear_attention_models_on_both_routes():
    """Qwen3-Next-style gated-delta layers: from 5.25 their recurrent states keep the intermediate states of a
    multi-token pass (`recurrent_states_to_keep`), so both routes roll them back exactly."""
    target, draft = sharpen(*tiny_pair("qwen3_next", noise=0.03, seed=1, **GATED_DELTA))
    assert_equal_to_target(target, draft, chain_method, prompts=LONG[:1], max_new_tokens=16)


@pytest.mark.skipif(not RECURRENT_HISTORY, reason="recurrent states keep a history from transformers 5.25")
def test_recurrent_models_without_intermediate_states_refuse_the_own_loop_clearly():
    """Mamba computes only the last state of a multi-token pass: the own loop cannot roll it back and says so
    (no IndexError from inside transformers); candidate_generator= (transformers' loop) stays exact."""
    target, draft = sharpen(*tiny_pair("mamba", noise=0.03, seed=1))
    ids = torch.tensor([LONG[0]])
    reference = target.generate(ids, max_new_tokens=12, do_sample=False)
    out, _ = run(target, draft, chain_method, "candidate_generator", ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(out, reference)
    with pytest.raises(ValueError, match="recurrent states cannot be rolled back.*intermediate states"):
        run(target, draft, chain_method, "custom_generate", ids, max_new_tokens=12, do_sample=False)


@pytest.mark.skipif(RECURRENT_HISTORY, reason="before transformers 5.25 recurrent states cannot be rolled back")
def test_recurrent_models_are_refused_before_5_25():
    target, draft = tiny_pair("qwen3_next", noise=0.03, seed=1, **GATED_DELTA)
    for route in ROUTES:
        with pytest.raises(ValueError, match="stateful|rolled back"):
            run(target, draft, chain_method, route, torch.tensor([LONG[0]]), max_new_tokens=4)


# ---------------------------------------------------------------------------------------------- padded vocabularies
def padded_pair(target_vocab: int, draft_vocab: int):
    """One tokenizer of 96 tokens; output layers padded to `target_vocab` / `draft_vocab` rows."""
    target, _ = tiny_pair("qwen2", vocab_size=target_vocab, seed=1)
    _, draft = tiny_pair("qwen2", vocab_size=draft_vocab, seed=1, noise=0.03)
    with torch.no_grad():  # the draft copies the target's real rows (plus noise), so the two agree often
        shared = 96
        for name, param in draft.named_parameters():
            source = dict(target.named_parameters())[name]
            if param.shape == source.shape:
                param.copy_(source + 0.03 * source.std() * torch.randn_like(source))
            else:
                param[:shared].copy_(source[:shared])
        for model in (target, draft):
            model.get_output_embeddings().weight[shared:].fill_(0.0)  # padding rows
            model.get_output_embeddings().weight.mul_(6.0)
    return target, draft


@pytest.mark.parametrize("target_vocab,draft_vocab", [(97, 96), (96, 97), (98, 97)])
def test_padded_vocabularies_chain_and_tree(target_vocab, draft_vocab):
    """Like Qwen2.5-0.5B (151,936 rows) -> 7B (152,064 rows): greedy output equals the target's, chain and tree."""
    target, draft = padded_pair(target_vocab, draft_vocab)
    prompts = [[2, 5, 6, 7, 8, 9], [3, 40, 41, 42]]
    assert_equal_to_target(target, draft, chain_method, prompts=prompts)
    assert_equal_to_target(target, draft, lambda d=None: DySpecCandidateGenerator(budget=6, draft_model=d),
                           prompts=prompts)


def test_padded_vocabularies_checked_against_the_tokenizers():
    from hf_specdecpp.testing import tiny_tokenizer

    target, draft = padded_pair(112, 96)  # too different to be taken for padding unless the tokenizers say so
    ids = torch.tensor([[2, 5, 6, 7]])
    with pytest.raises(ValueError, match="look like different tokenizers.*pass tokenizer= and assistant_tokenizer="):
        target.generate(ids, assistant_model=draft, candidate_generator=chain_method(), max_new_tokens=8)
    reference = target.generate(ids, max_new_tokens=8, do_sample=False)
    out = target.generate(ids, assistant_model=draft, candidate_generator=chain_method(), max_new_tokens=8,
                          do_sample=False, tokenizer=tiny_tokenizer(96), assistant_tokenizer=tiny_tokenizer(96))
    assert torch.equal(out, reference)
    same, _ = tiny_pair("llama", seed=1)  # one vocabulary size: transformers itself would refuse assistant_tokenizer
    out = same.generate(ids, assistant_model=tiny_pair("llama", seed=1)[1], candidate_generator=chain_method(),
                        max_new_tokens=8, do_sample=False, tokenizer=tiny_tokenizer(96),
                        assistant_tokenizer=tiny_tokenizer(96))
    assert torch.equal(out, same.generate(ids, max_new_tokens=8, do_sample=False))
    with pytest.raises(ValueError, match="tokenizer differs"):
        target.generate(ids, assistant_model=draft, candidate_generator=chain_method(), max_new_tokens=8,
                        tokenizer=tiny_tokenizer(96), assistant_tokenizer=tiny_tokenizer(90))


@pytest.mark.parametrize("method_factory", [chain_method, lambda d=None: DySpecCandidateGenerator(4, draft_model=d)],
                         ids=["chain", "tree"])
def test_target_tokens_outside_the_draft_vocabulary(method_factory):
    """The target (100 rows) emits, and the prompt holds, ids the draft (96 rows) has no embedding for: the draft
    reads a stand-in token (with a warning), and the output is still the target's."""
    from hf_specdecpp.testing import tiny_tokenizer
    from hf_specdecpp.utils.warnings import reset_warnings

    target, draft = padded_pair(100, 96)
    ids = torch.tensor([[2, 5, 99, 7, 8]])
    bias = [[[77, 98], 100.0], [[9, 97], 100.0]]  # the target emits 98 after 77 and 97 after 9
    kwargs = dict(max_new_tokens=16, do_sample=False, sequence_bias=bias, tokenizer=tiny_tokenizer(96),
                  assistant_tokenizer=tiny_tokenizer(96))
    reference = target.generate(ids, **kwargs)
    assert {97, 98} <= set(reference[0, ids.shape[1]:].tolist())
    reset_warnings()
    message = r"Token id 99 is outside the draft's vocabulary \(96 rows; the target has 100\)"
    with pytest.warns(UserWarning, match=message):
        out = target.generate(ids, assistant_model=draft, candidate_generator=method_factory(), **kwargs)
    assert torch.equal(out, reference)


@pytest.mark.slow
@pytest.mark.parametrize("route", ROUTES)
def test_padded_vocabulary_sampling_keeps_the_target_distribution(route):
    """Draft distributions padded with zeros: speculative sampling over the target's vocabulary stays exact."""
    from helpers import tv_and_bound

    target, draft = padded_pair(97, 96)
    with torch.no_grad():
        for model in (target, draft):
            model.get_output_embeddings().weight.mul_(0.05)  # flat: many outcomes with visible mass
    prompt = torch.tensor([[2, 5, 6]])
    with torch.no_grad():
        p = target(prompt).logits[0, -1].softmax(-1)
    exact = {(int(t),): float(p[t]) for t in range(p.shape[0]) if p[t] > 0}
    counts: dict = {}
    torch.manual_seed(7)
    n = 3000
    for _ in range(n):
        out, _ = run(target, draft, lambda d=None: FixedLengthCandidateGenerator(3, draft_model=d), route, prompt,
                     max_new_tokens=2, do_sample=True, top_k=0, eos_token_id=None)
        key = (int(out[0, prompt.shape[1]]),)
        counts[key] = counts.get(key, 0) + 1
    tv, bound = tv_and_bound(counts, exact, n, 1e-6)
    assert tv <= bound, (tv, bound)


# ---------------------------------------------------------------------------------------------- trees beyond Llama
@pytest.mark.parametrize("arch", ["mistral", "qwen3", "phi3", "granite"])
def test_trees_on_other_architectures(arch):
    window = {"sliding_window": None} if arch in ("mistral", "phi3") else {}  # Mistral without a window
    target, draft = sharpen(*tiny_pair(arch, noise=0.03, seed=1, **window))
    assert_equal_to_target(target, draft, lambda d=None: DySpecCandidateGenerator(budget=8, draft_model=d),
                           prompts=[[2, 5, 6, 7, 8, 9]], max_new_tokens=16)


# ---------------------------------------------------------------------------------------------- caches, beams, inputs
def test_static_cache():
    """transformers >= 5.24 crops static caches in its assisted decoding: there candidate_generator= works with
    cache_implementation="static"; elsewhere, and on hf_specdecpp's own loop, a clear error."""
    from transformers.cache_utils import StaticLayer

    target, draft = sharpen(*tiny_pair("llama", noise=0.03, seed=1))
    ids = torch.tensor([[2, 5, 6, 7, 8, 9]])
    kwargs = dict(max_new_tokens=12, do_sample=False, cache_implementation="static")
    if hasattr(StaticLayer, "crop"):
        reference = target.generate(ids, max_new_tokens=12, do_sample=False)
        out = target.generate(ids, assistant_model=draft, candidate_generator=chain_method(), **kwargs)
        assert torch.equal(out, reference)
    else:
        with pytest.raises(ValueError, match="cache_implementation='static' with candidate_generator= needs"):
            target.generate(ids, assistant_model=draft, candidate_generator=chain_method(), **kwargs)
    with pytest.raises(ValueError, match="needs a dynamic one.*cache_implementation"):
        target.generate(ids, custom_generate=chain_method(draft), **kwargs)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("method", ["chain", "tree"])
def test_beam_search_is_refused(route, method):
    target, draft = tiny_pair("llama", seed=1)
    factory = chain_method if method == "chain" else (lambda d=None: DySpecCandidateGenerator(budget=4, draft_model=d))
    with pytest.raises(ValueError, match="does not combine with beam search: got num_beams=2"):
        run(target, draft, factory, route, torch.tensor([[2, 5, 6]]), num_beams=2, max_new_tokens=4)


class LlamaWithPixels(LlamaForCausalLM):
    """A text model whose forward also takes `pixel_values` (as multimodal models do)."""

    def forward(self, *args, pixel_values=None, **kwargs):
        return super().forward(*args, **kwargs)


def test_inputs_the_loop_cannot_pass_are_refused():
    torch.manual_seed(0)
    target = LlamaWithPixels(tiny_config("llama")).eval()
    draft = LlamaWithPixels(tiny_config("llama")).eval()
    ids = torch.tensor([[2, 5, 6, 7]])
    with pytest.raises(ValueError, match=r"cannot pass \['pixel_values'\]"):
        target.generate(ids, custom_generate=chain_method(draft), pixel_values=torch.zeros(1, 3, 4, 4),
                        max_new_tokens=4)
    gpt2 = GPT2Config(vocab_size=96, n_embd=32, n_layer=1, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(gpt2).eval()
    with pytest.raises(ValueError, match="token_type_ids other than all zeros"):
        model.generate(ids, custom_generate=FixedLengthCandidateGenerator(2, draft_model=model),
                       token_type_ids=torch.ones_like(ids), max_new_tokens=4, pad_token_id=0)


def test_prompt_lookup_and_early_exit_are_refused_with_a_method():
    target, draft = tiny_pair("llama", seed=1)
    ids = torch.tensor([[2, 5, 6, 7]])
    with pytest.raises(ValueError, match="prompt_lookup_num_tokens= selects one of transformers' own"):
        target.generate(ids, assistant_model=draft, candidate_generator=chain_method(), prompt_lookup_num_tokens=3,
                        max_new_tokens=4)
    with pytest.raises(ValueError, match="prompt_lookup_num_tokens= selects one of transformers' own"):
        target.generate(ids, custom_generate=chain_method(draft), prompt_lookup_num_tokens=3, max_new_tokens=4)


def test_output_logits_are_returned_on_our_loop():
    target, draft = tiny_pair("llama", seed=1)
    ids = torch.tensor([[2, 5, 6, 7]])
    reference = target.generate(ids, max_new_tokens=6, do_sample=False, return_dict_in_generate=True,
                                output_logits=True, output_scores=True)
    for factory in (chain_method, lambda d=None: DySpecCandidateGenerator(budget=4, draft_model=d)):
        out = target.generate(ids, custom_generate=factory(draft), max_new_tokens=6, do_sample=False,
                              return_dict_in_generate=True, output_logits=True, output_scores=True)
        assert torch.equal(out.sequences, reference.sequences)
        new = reference.sequences.shape[1] - ids.shape[1]
        assert out.logits is not None and len(out.logits) == len(reference.logits) == len(out.scores) == new
        for ours, theirs in zip(out.logits, reference.logits):
            torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- versions, imports
def test_outside_the_tested_range_import_warns_once_and_the_patch_checks_itself(monkeypatch):
    import transformers

    from hf_specdecpp.integration import generate_patch
    from hf_specdecpp.utils.warnings import reset_warnings

    reset_warnings()
    from hf_specdecpp.core import compat

    # transformers' lazy module can be replaced in sys.modules by a later `from transformers import ...` (seen
    # with LlamaForCausalLM on 5.23): set the version on the object our code reads as well
    for module in {id(transformers): transformers, id(compat.transformers): compat.transformers}.values():
        monkeypatch.setattr(module, "__version__", "5.99.0")
    with pytest.warns(UserWarning, match=r"tested with transformers >=5.15.0,<5.26.0; transformers 5.99.0"):
        hf_specdecpp.install()
    calls = []
    monkeypatch.setattr(generate_patch, "_ROUTES", None)
    import hf_specdecpp.integration.upstream as upstream

    monkeypatch.setattr(upstream, "check_assisted_route", lambda: calls.append("assisted"))
    monkeypatch.setattr(upstream, "check_own_loop", lambda: calls.append("own loop"))
    target, draft = tiny_pair("llama", seed=1)
    for _ in range(2):
        target.generate(torch.tensor([[2, 5, 6]]), assistant_model=draft, candidate_generator=chain_method(),
                        max_new_tokens=3)
    assert calls == ["assisted", "own loop"]  # checked once, before the first use
    generate_patch.reset_routes()


def test_heads_and_cli_import_without_transformers_generation():
    """`import hf_specdecpp.head` must not need the generate() patch; the CLI must not load torch for --help."""
    code = ("import sys, hf_specdecpp.head; assert 'transformers.generation.utils' not in sys.modules; "
            "import hf_specdecpp.cli; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
    code = "import sys, hf_specdecpp.cli; assert 'torch' not in sys.modules, 'torch imported'; print('lean')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "lean" in out.stdout, out.stderr[-2000:]
