"""Bad input gets a clear error before any generation, and chat-template inputs work as usual."""

import sys

import pytest
import torch

from hf_specdecpp import AcceptanceHead, SpecDecPPCandidateGenerator
from hf_specdecpp.core.compat import TESTED_RANGE, is_tested_transformers
from hf_specdecpp.core.pair import check_pair
from hf_specdecpp.integration import generate_patch
from hf_specdecpp.testing import tiny_pair, tiny_tokenizer

from helpers import constant_head, random_head

IDS = torch.tensor([[2, 5, 6, 7]])


@pytest.fixture(scope="module")
def pair():
    return tiny_pair("qwen2", noise=0.02, seed=2)


def test_head_hidden_size_mismatch_names_both_sizes(pair):
    target, draft = pair
    generator = SpecDecPPCandidateGenerator(head=AcceptanceHead(48, 1))
    calls = []
    handle = target.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(ValueError, match=r"hidden size 48.*hidden size 32"):
            target.generate(IDS, assistant_model=draft, candidate_generator=generator, max_new_tokens=4)
    finally:
        handle.remove()
    assert calls == []  # raised before any generation
    with pytest.raises(ValueError, match="48"):
        SpecDecPPCandidateGenerator(head=AcceptanceHead(48, 1), draft_model=draft)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.5, 2.0])
def test_threshold_outside_unit_interval(threshold):
    with pytest.raises(ValueError, match="threshold"):
        SpecDecPPCandidateGenerator(head=AcceptanceHead(32, 1), threshold=threshold)


def test_min_above_max():
    with pytest.raises(ValueError, match="min_candidates"):
        SpecDecPPCandidateGenerator(head=AcceptanceHead(32, 1), min_candidates=6, max_candidates=3)


def test_not_a_head():
    with pytest.raises(TypeError, match="AcceptanceHead"):
        SpecDecPPCandidateGenerator(head="org/head-repo")


def test_batch_without_attention_mask_is_refused(pair):
    target, draft = pair
    generator = SpecDecPPCandidateGenerator(head=random_head(32))
    batch = torch.tensor([[2, 5, 6, 7], [3, 4, 5, 6]])
    with pytest.raises(ValueError, match="needs an attention_mask"):
        target.generate(batch, assistant_model=draft, candidate_generator=generator, max_new_tokens=4,
                        pad_token_id=None)
    assert generate_patch.active_call() is None


def test_right_padding_is_refused(pair):
    target, draft = pair
    generator = SpecDecPPCandidateGenerator(head=random_head(32))
    batch = torch.tensor([[2, 5, 6, 7], [3, 4, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    for route in ("candidate_generator", "custom_generate"):
        method = SpecDecPPCandidateGenerator(head=random_head(32), draft_model=draft)
        kwargs = {route: method} if route == "custom_generate" else {route: generator, "assistant_model": draft}
        with pytest.raises(ValueError, match="left padding"):
            target.generate(batch, attention_mask=mask, max_new_tokens=4, **kwargs)


def test_different_vocabularies(pair):
    target, _ = pair
    other_target, other_draft = tiny_pair("qwen2", vocab_size=120, seed=5)
    generator = SpecDecPPCandidateGenerator(head=random_head(32))
    with pytest.raises(ValueError, match=r"vocabulary \(120 tokens\) differs from the target's \(96"):
        target.generate(IDS, assistant_model=other_draft, candidate_generator=generator, max_new_tokens=4)
    with pytest.raises(ValueError, match="different tokenizers"):
        target.generate(IDS, custom_generate=SpecDecPPCandidateGenerator(head=random_head(32), draft_model=other_draft),
                        max_new_tokens=4)


@pytest.mark.parametrize("route", ["assisted", "own loop", "custom_generate"])
def test_the_pair_is_checked_once_per_call(pair, route, monkeypatch):
    """check_pair runs once per generate() call on every route (the patch's early check is not repeated)."""
    target, draft = pair
    calls = []
    for module in [m for name, m in sys.modules.items() if name.startswith("hf_specdecpp")]:
        if getattr(module, "check_pair", None) is check_pair:  # wherever the package imported it
            monkeypatch.setattr(module, "check_pair", lambda *args: calls.append(1) or check_pair(*args))
    ids, kwargs = IDS, {"candidate_generator": SpecDecPPCandidateGenerator(head=random_head(32)),
                        "assistant_model": draft}
    if route == "own loop":  # a batch: the patch hands the call to the method's own loop
        ids = torch.tensor([[2, 5, 6, 7], [0, 3, 4, 8]])
        kwargs["attention_mask"] = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    elif route == "custom_generate":
        kwargs = {"custom_generate": SpecDecPPCandidateGenerator(head=random_head(32), draft_model=draft)}
    target.generate(ids, max_new_tokens=4, do_sample=False, **kwargs)
    assert len(calls) == 1


def test_no_draft_anywhere(pair):
    target, _ = pair
    generator = SpecDecPPCandidateGenerator(head=random_head(32))
    with pytest.raises(ValueError, match="needs a draft model"):
        target.generate(IDS, candidate_generator=generator, max_new_tokens=4)
    with pytest.raises(ValueError, match="give the draft to the generator"):
        target.generate(IDS, custom_generate=generator, max_new_tokens=4)


def test_draft_in_generator_only_is_enough(pair):
    target, draft = pair
    reference = target.generate(IDS, max_new_tokens=10, do_sample=False)
    generator = SpecDecPPCandidateGenerator(head=random_head(32), draft_model=draft)
    out = target.generate(IDS, candidate_generator=generator, max_new_tokens=10, do_sample=False)
    assert torch.equal(out, reference)


def test_conflicting_drafts(pair):
    target, draft = pair
    _, other = tiny_pair("qwen2", noise=0.1, seed=9)
    generator = SpecDecPPCandidateGenerator(head=random_head(32), draft_model=draft)
    with pytest.raises(ValueError, match="differs"):
        target.generate(IDS, assistant_model=other, candidate_generator=generator, max_new_tokens=4)


def test_wrong_candidate_generator_type(pair):
    target, draft = pair
    with pytest.raises(TypeError, match="candidate_generator must be"):
        target.generate(IDS, assistant_model=draft, candidate_generator=object(), max_new_tokens=4)


def test_tested_transformers_range():
    assert TESTED_RANGE == ">=5.15.0,<5.26.0"
    assert is_tested_transformers("5.15.0") and is_tested_transformers("5.25.0") and is_tested_transformers("5.23.1.dev0")
    assert not is_tested_transformers("4.57.1") and not is_tested_transformers("5.14.1")
    assert not is_tested_transformers("5.26.0")


def test_chat_template_inputs(pair):
    target, draft = pair
    tokenizer = tiny_tokenizer()
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "w6 w7 w8 w9"}], add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )
    reference = target.generate(**inputs, max_new_tokens=12, do_sample=False)
    generator = SpecDecPPCandidateGenerator(head=constant_head(32, 0.9), threshold=0.5)
    out = target.generate(**inputs, assistant_model=draft, candidate_generator=generator, max_new_tokens=12,
                          do_sample=False)
    assert torch.equal(out, reference)
    assert tokenizer.decode(out[0, inputs["input_ids"].shape[1]:]).strip()


@pytest.mark.parametrize("kwargs,argument", [
    (dict(initial=0.0), "initial"), (dict(smoothing=0.0), "smoothing"), (dict(smoothing=1.5), "smoothing"),
    (dict(max_candidates=0), "max_candidates"), (dict(min_candidates=5, max_candidates=3), "min_candidates")])
def test_gammatune_config_errors_name_the_argument(kwargs, argument):
    from hf_specdecpp import GammaTuneCandidateGenerator

    with pytest.raises(ValueError, match=argument):
        GammaTuneCandidateGenerator(**kwargs)


@pytest.mark.parametrize("kwargs,argument", [(dict(estimator="svp"), "estimator"),
                                             (dict(estimator="svip", gamma=0.0), "gamma"),
                                             (dict(estimator="svip", lam=float("nan")), "lam")])
def test_svip_config_errors_name_the_argument(kwargs, argument):
    from hf_specdecpp import EntropyStoppingCandidateGenerator

    with pytest.raises(ValueError, match=argument):
        EntropyStoppingCandidateGenerator(**kwargs)


@pytest.mark.parametrize("argument", ["past_key_values", "cache"])
@pytest.mark.parametrize("route", ["candidate_generator", "custom_generate"])
@pytest.mark.parametrize("kind", ["chain", "tree"])
def test_prefilled_cache_is_refused_on_every_route(pair, argument, route, kind):
    """A cache holding the prompt's prefix would make transformers' assisted decoding continue without the draft
    having read that prefix (different tokens, no error): every route refuses it, naming the argument."""
    from transformers import DynamicCache

    from hf_specdecpp import DySpecCandidateGenerator
    from hf_specdecpp.core.compat import cache_argument, cache_kwargs

    target, draft = pair
    if argument == "cache" and cache_argument(target) != "cache":
        pytest.skip("generate() takes cache= from transformers 5.24 on")
    ids = torch.tensor([[2, 5, 6, 7, 8, 9]])
    d = draft if route == "custom_generate" else None
    method = SpecDecPPCandidateGenerator(head=random_head(32), draft_model=d) if kind == "chain" else \
        DySpecCandidateGenerator(budget=4, draft_model=d)
    extra = {"assistant_model": draft} if route == "candidate_generator" else {}
    cache = DynamicCache(config=target.config)
    with torch.no_grad():
        target(ids[:, :4], **cache_kwargs(target, cache))
    with pytest.raises(ValueError, match=rf"{argument}=.*pre-filled cache \(4 tokens\).*starts from an empty cache"):
        target.generate(ids, **{argument: cache}, **{route: method}, **extra, max_new_tokens=6, do_sample=False)
    # an empty cache is fine: it is filled from the prompt
    out = target.generate(ids, **{argument: DynamicCache(config=target.config)}, **{route: method}, **extra,
                          max_new_tokens=6, do_sample=False)
    assert torch.equal(out, target.generate(ids, max_new_tokens=6, do_sample=False))
