"""The candidate_generator= patch: idempotent, a no-op without the argument, nothing left after errors,
thread-safe, and pinned to the upstream details it relies on."""

import re
import threading
import warnings

import pytest
import torch
import transformers
from transformers.generation.streamers import BaseStreamer
from transformers.generation.utils import GenerationMixin

from hf_specdecpp import SpecDecPPCandidateGenerator
from hf_specdecpp.core.compat import UpstreamChangedError
from hf_specdecpp.integration import generate_patch, upstream
from hf_specdecpp.integration.upstream import verify_upstream
from hf_specdecpp.utils.warnings import reset_warnings
from hf_specdecpp.testing import tiny_pair

from helpers import CollectingStreamer, random_head


@pytest.fixture(scope="module")
def pair():
    return tiny_pair("llama", noise=0.02, seed=1)


IDS = torch.tensor([[2, 5, 6, 7, 8, 9]])


def test_upstream_contract_holds_by_behaviour():
    # A tiny call through each route: fails when transformers changes what the package relies on.
    verify_upstream()
    assert generate_patch.is_installed()
    assert upstream.check_cache_layout() is None


def test_upstream_check_fails_loudly_when_transformers_stops_asking_for_a_generator(monkeypatch):
    """If transformers' assisted decoding stopped calling `_get_candidate_generator`, the check must say so."""
    original = generate_patch._original(GenerationMixin._get_candidate_generator)
    monkeypatch.setattr(GenerationMixin, "_get_candidate_generator", original)  # the patch's hook is bypassed
    assert "did not ask hf_specdecpp for a candidate generator" in upstream.check_assisted_route()
    with pytest.raises(UpstreamChangedError, match="candidate_generator="):
        verify_upstream()


@pytest.mark.parametrize("broken", ["crop", "realign", "layers"])
def test_cache_layout_check_cannot_pass_silently(monkeypatch, broken):
    """The own loop edits transformers' cache objects: a crop or re-alignment that does nothing, or a cache
    without `layers`, must fail the check instead of being skipped."""
    from transformers import DynamicCache

    from hf_specdecpp.core import cache as cache_module
    from hf_specdecpp.core.compat import cache_layers

    if broken == "crop":
        monkeypatch.setattr(DynamicCache, "crop", lambda self, n: None)
        expected = "crop"
    elif broken == "realign":
        monkeypatch.setattr(cache_module, "realign", lambda cache, pads, keep: pads)
        expected = "re-align"
    else:
        class NoLayers:  # what a cache with another storage layout looks like to the loop
            pass

        with pytest.raises(UpstreamChangedError, match="no per-layer storage"):
            cache_layers(NoLayers())
        monkeypatch.setattr(cache_module, "new_batch_cache", NoLayersCache)
        expected = "forward pass into the loop's cache failed|no per-layer storage"
    problem = upstream.check_cache_layout()
    assert problem is not None and re.search(expected, problem), problem
    assert upstream.check_own_loop() == problem


def run_threads(work, count: int, timeout: float = 300) -> None:
    """Run `work(i)` for i < count in threads at once and wait for all of them."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)


class NoLayersCache:
    """A stand-in cache object without `layers`: a forward pass cannot use it."""

    def __init__(self):
        self.store = {}


@pytest.fixture()
def outside_tested_range(monkeypatch):
    """Pretend the installed transformers is a newer, untested release; forget earlier route checks."""
    monkeypatch.setattr(generate_patch, "is_tested_transformers", lambda: False)
    generate_patch.reset_routes()
    reset_warnings()
    yield
    generate_patch.reset_routes()


def _assisted_decoding_removed(monkeypatch):
    monkeypatch.delattr(GenerationMixin, "_assisted_decoding")


def _candidate_generator_contract_changed(monkeypatch):
    """transformers 5.25's kind of change, replayed on any release: right after asking for the candidate
    generator, assisted decoding reads an attribute ours lacks (5.25 read `num_drafting_tokens`)."""
    patched = GenerationMixin._get_candidate_generator

    def reads_a_new_attribute(self, *args, **kwargs):
        generator = patched(self, *args, **kwargs)
        generator.num_tokens_of_a_future_release  # noqa: B018 (raises AttributeError for ours)
        return generator

    reads_a_new_attribute.__hf_specdecpp_original__ = patched.__hf_specdecpp_original__
    monkeypatch.setattr(GenerationMixin, "_get_candidate_generator", reads_a_new_attribute)


@pytest.mark.parametrize("change", [_assisted_decoding_removed, _candidate_generator_contract_changed])
def test_upstream_change_falls_back_to_the_own_loop_exactly(pair, monkeypatch, outside_tested_range, change):
    """On an untested release whose assisted decoding no longer works with our generator, candidate_generator=
    still gives the target's exact greedy output, through the own loop, with one warning."""
    target, draft = pair
    expected = target.generate(IDS, max_new_tokens=14, do_sample=False)
    change(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = [target.generate(IDS, assistant_model=draft, return_dict_in_generate=True, max_new_tokens=14,
                                candidate_generator=SpecDecPPCandidateGenerator(head=random_head(32), threshold=0.5),
                                do_sample=False) for _ in range(2)]
    for out in outs:
        assert torch.equal(out.sequences, expected)
        assert out.speculation_stats.rounds > 0
    fallback = [w for w in caught if "own decoding loop instead" in str(w.message)]
    assert len(fallback) == 1, [str(w.message) for w in caught]
    message = str(fallback[0].message)
    assert transformers.__version__ in message and "assisted decoding failed" in message
    assert generate_patch.routes().assisted is not None and generate_patch.routes().own_loop is None


def test_no_route_left_raises_naming_what_changed(pair, monkeypatch, outside_tested_range):
    target, draft = pair
    monkeypatch.setattr(upstream, "check_assisted_route", lambda: "assisted decoding changed (simulated)")
    monkeypatch.setattr(upstream, "check_own_loop", lambda: "custom_generate= changed (simulated)")
    with pytest.raises(UpstreamChangedError, match=r"assisted decoding changed \(simulated\); custom_generate= "
                                                   r"changed \(simulated\).*pip install"):
        target.generate(IDS, assistant_model=draft, max_new_tokens=4,
                        candidate_generator=SpecDecPPCandidateGenerator(head=random_head(32), threshold=0.5))


def test_own_loop_broken_keeps_the_assisted_route_for_one_sequence(pair, monkeypatch, outside_tested_range):
    target, draft = pair
    monkeypatch.setattr(upstream, "check_own_loop", lambda: "custom_generate= changed (simulated)")
    expected = target.generate(IDS, max_new_tokens=10, do_sample=False)
    method = SpecDecPPCandidateGenerator(head=random_head(32), threshold=0.5)
    out = target.generate(IDS, assistant_model=draft, candidate_generator=method, max_new_tokens=10, do_sample=False)
    assert torch.equal(out, expected)
    batch = torch.cat([IDS, IDS])
    with pytest.raises(UpstreamChangedError, match="own decoding loop"):
        target.generate(batch, attention_mask=torch.ones_like(batch), assistant_model=draft, max_new_tokens=4,
                        candidate_generator=method)


def test_install_and_uninstall_from_threads_leave_one_consistent_patch():
    errors = []

    def flip(i):
        try:
            for _ in range(50):
                (generate_patch.install if i % 2 else generate_patch.uninstall)()
                generate_patch.install()
        except Exception as err:  # surfaced below
            errors.append(err)

    run_threads(flip, 4, timeout=60)
    generate_patch.install()
    assert not errors, errors
    original = GenerationMixin.generate.__hf_specdecpp_original__
    assert not hasattr(original, "__hf_specdecpp_original__")  # never a patch wrapped around a patch
    assert not hasattr(GenerationMixin._get_candidate_generator.__hf_specdecpp_original__,
                       "__hf_specdecpp_original__")


def test_install_is_idempotent_and_uninstall_restores():
    patched_generate = GenerationMixin.generate
    generate_patch.install()
    assert GenerationMixin.generate is patched_generate
    original = getattr(patched_generate, "__hf_specdecpp_original__")
    generate_patch.uninstall()
    try:
        assert GenerationMixin.generate is original
        assert not generate_patch.is_installed()
    finally:
        generate_patch.install()
    assert generate_patch.is_installed()


def test_without_candidate_generator_nothing_changes(pair):
    target, draft = pair
    # plain and stock-assisted generation still go through transformers' own code paths
    plain = target.generate(IDS, max_new_tokens=12, do_sample=False)
    stock = target.generate(IDS, assistant_model=draft, max_new_tokens=12, do_sample=False)
    assert torch.equal(plain, stock)
    assert generate_patch.active_call() is None


def test_unknown_kwarg_still_rejected(pair):
    target, _ = pair
    with pytest.raises(ValueError, match="not used by the model"):
        target.generate(IDS, max_new_tokens=2, not_an_argument=1)


def test_nothing_left_active_after_an_exception(pair):
    target, draft = pair

    class Boom(Exception):
        pass

    class FailingStreamer(BaseStreamer):
        def put(self, value):
            if value.shape[-1] != IDS.shape[-1]:
                raise Boom()

        def end(self):
            pass

    generator = SpecDecPPCandidateGenerator(head=random_head(32), threshold=0.5)
    with pytest.raises(Boom):
        target.generate(IDS, assistant_model=draft, candidate_generator=generator, streamer=FailingStreamer(),
                        max_new_tokens=10)
    assert generate_patch.active_call() is None
    # the generator is released and the next plain call uses the stock path
    plain = target.generate(IDS, max_new_tokens=8, do_sample=False)
    again = target.generate(IDS, assistant_model=draft, candidate_generator=generator, max_new_tokens=8,
                            do_sample=False)
    assert torch.equal(plain, again)


def test_streamer_receives_exactly_the_output(pair):
    target, draft = pair

    for route in ("candidate_generator", "custom_generate"):
        streamer = CollectingStreamer()
        if route == "candidate_generator":
            generator = SpecDecPPCandidateGenerator(head=random_head(32), threshold=0.5)
            out = target.generate(IDS, assistant_model=draft, candidate_generator=generator, streamer=streamer,
                                  max_new_tokens=15, do_sample=False)
        else:
            generator = SpecDecPPCandidateGenerator(head=random_head(32), threshold=0.5, draft_model=draft,
                                                    streamer=streamer)
            out = target.generate(IDS, custom_generate=generator, max_new_tokens=15, do_sample=False)
        streamed = [token for chunk in streamer.chunks for token in chunk]
        assert streamed == out[0].tolist(), route
        assert streamer.ended
        assert len(streamer.chunks) == generator.stats.rounds + 1  # the prompt, then one chunk per round


def test_two_threads_generate_concurrently(pair):
    target, draft = pair
    prompts = [torch.tensor([[2, 5, 6, 7, 8, 9]]), torch.tensor([[3, 17, 4, 40, 41]])]
    expected = [target.generate(p, max_new_tokens=20, do_sample=False) for p in prompts]
    results, errors = {}, []

    def work(name, prompt, use_plugin):
        try:
            for _ in range(3):
                if use_plugin:
                    generator = SpecDecPPCandidateGenerator(head=random_head(32, seed=len(name)), threshold=0.5)
                    out = target.generate(prompt, assistant_model=draft, candidate_generator=generator,
                                          max_new_tokens=20, do_sample=False)
                else:
                    out = target.generate(prompt, max_new_tokens=20, do_sample=False)
                results.setdefault(name, []).append(out)
                assert generate_patch.active_call() is None
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [
        threading.Thread(target=work, args=("a", prompts[0], True)),
        threading.Thread(target=work, args=("b", prompts[1], True)),
        threading.Thread(target=work, args=("c", prompts[0], False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert all(torch.equal(o, expected[0]) for o in results["a"])
    assert all(torch.equal(o, expected[1]) for o in results["b"])
    assert all(torch.equal(o, expected[0]) for o in results["c"])


def test_one_method_object_serves_concurrent_calls(pair):
    """The object a user passes is an immutable description: two threads may use the same one at once, and each
    call's statistics describe that call only."""
    target, draft = pair
    method = SpecDecPPCandidateGenerator(head=random_head(32, seed=5), threshold=0.5)
    prompts = [torch.tensor([[2, 5, 6, 7, 8, 9]]), torch.tensor([[3, 17, 4, 40, 41]])]
    lengths = [12, 20]
    expected = [target.generate(p, max_new_tokens=n, do_sample=False) for p, n in zip(prompts, lengths)]
    results, errors, barrier = {}, [], threading.Barrier(2)

    def work(i):
        try:
            barrier.wait()
            for _ in range(3):
                out = target.generate(prompts[i], assistant_model=draft, candidate_generator=method,
                                      max_new_tokens=lengths[i], do_sample=False, return_dict_in_generate=True)
                results.setdefault(i, []).append(out)
                assert method.stats is out.speculation_stats  # this thread's latest call
        except Exception as err:  # surfaced below
            errors.append(err)

    run_threads(work, 2)
    assert not errors, errors
    for i in range(2):
        for out in results[i]:
            assert torch.equal(out.sequences, expected[i])
            assert out.speculation_stats.new_tokens == expected[i].shape[1] - prompts[i].shape[1]


def test_method_objects_are_immutable():
    method = SpecDecPPCandidateGenerator(head=random_head(32), threshold=0.5)
    with pytest.raises(AttributeError, match="immutable"):
        method.head = random_head(32, seed=2)
    with pytest.raises(Exception):
        method.config.threshold = 0.9  # a frozen dataclass
