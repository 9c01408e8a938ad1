"""The one place where hf_specdecpp patches transformers: a `candidate_generator=` argument for generate().

transformers has no public hook to supply a custom `CandidateGenerator` to assisted generation: `generate()`
rejects unknown keyword arguments and `GenerationMixin._get_candidate_generator` picks a generator by
hard-coded branches. `install()` wraps both, once:

- `generate(..., candidate_generator=method)` resolves the draft (`assistant_model=` or the method's own) and
  checks the call. A chain method decoding one sequence runs inside transformers' own assisted decoding: the
  call's state sits in a context variable (per thread and task) for the duration of that call only, and the
  wrapped `_get_candidate_generator` returns a fresh per-call candidate generator built from it. transformers
  asks the stopping criteria once per round; the generator offers each token to them in order, and the call's
  criteria, streamer and output are wrapped so that a round a criterion stops mid-way ends there
  (`core/assisted.py`). Everything else (draft trees, batches, several return sequences) runs the method's own
  loop as generate()'s `custom_generate=` decoding method, with the draft and the streamer handed to it.
- A pre-filled `past_key_values=`/`cache=` is refused on every route (the draft never read that prefix).
- Without `candidate_generator=` both wrappers call transformers' originals unchanged.

The call's statistics come back on the output object (`return_dict_in_generate=True`) and in
`method.stats`. `uninstall()` restores the originals.

Release day: on a transformers release outside the tested range (`core.compat.TESTED_RANGE`) the routes are
checked by behaviour once, before the first call (`upstream.py`). When transformers' assisted decoding no
longer works with our candidate generator, one warning names the release and what changed, and every
`candidate_generator=` call runs the package's own loop through the public `custom_generate=` hook instead (the
same output); an error is raised only when no route is left.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import inspect
import threading
from dataclasses import dataclass
from typing import Any

import transformers
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList
from transformers.generation.utils import GenerationMixin

from ..core.assisted import CutStreamer, StopAfterCut, cut_output
from ..core.chain import CallContext
from ..core.compat import CACHE_KEYS, TESTED_RANGE, UpstreamChangedError, is_tested_transformers, \
    static_cache_croppable
from ..core.validation import check_empty_cache
from ..methods import registry
from ..methods.base import DecodingMethod, with_stats
from ..utils.warnings import warn_once
from . import upstream

_PATCH_ATTRIBUTE = "__hf_specdecpp_original__"
REFUSED_WITH_A_METHOD = ("prompt_lookup_num_tokens", "assistant_early_exit")
"""generate() arguments that choose transformers' own candidate generators: they cannot combine with ours."""


@dataclass
class CallState:
    """One `candidate_generator=` call served by transformers' assisted decoding."""

    method: DecodingMethod
    draft: Any
    tokenizer: Any = None
    assistant_tokenizer: Any = None
    stopping_criteria: Any = None  # the user's, as given to generate()
    generator: Any = None


_ACTIVE: contextvars.ContextVar[CallState | None] = contextvars.ContextVar("hf_specdecpp_call", default=None)


def _original(function):
    return getattr(function, _PATCH_ATTRIBUTE, function)


def is_installed() -> bool:
    return hasattr(GenerationMixin.generate, _PATCH_ATTRIBUTE)


def active_call() -> CallState | None:
    """The `candidate_generator=` call running in this context, if any."""
    return _ACTIVE.get()


_LOCK = threading.RLock()


def install() -> None:
    """Add `candidate_generator=` to `generate()`. Safe to call more than once, from any thread."""
    with _LOCK:
        if not is_installed():
            _install_locked()


def _install_locked() -> None:
    original_generate = GenerationMixin.generate
    original_get_candidate_generator = GenerationMixin._get_candidate_generator
    signature = inspect.signature(original_generate)

    @functools.wraps(original_generate)
    def generate(self, *args, candidate_generator: DecodingMethod | None = None, **kwargs):
        if candidate_generator is None:
            return original_generate(self, *args, **kwargs)
        return _generate_with_method(original_generate, signature, self, args, kwargs, candidate_generator)

    @functools.wraps(original_get_candidate_generator)
    def _get_candidate_generator(self, generation_config, input_ids, inputs_tensor, logits_processor, model_kwargs,
                                 *args, **kwargs):
        state = _ACTIVE.get()
        if state is None:
            return original_get_candidate_generator(self, generation_config, input_ids, inputs_tensor,
                                                    logits_processor, model_kwargs, *args, **kwargs)
        ctx = CallContext.create(self, state.draft, generation_config, LogitsProcessorList(logits_processor),
                                 tokenizer=state.tokenizer, assistant_tokenizer=state.assistant_tokenizer)
        # the call's criteria as generate() built them (stop strings, max_time, the user's), to offer token by token
        criteria = self._get_stopping_criteria(generation_config=generation_config,
                                               stopping_criteria=StoppingCriteriaList(state.stopping_criteria or []),
                                               tokenizer=state.tokenizer)
        state.generator = state.method.new_candidate_generator(ctx, input_ids, model_kwargs.get("attention_mask"),
                                                               criteria)
        return state.generator

    setattr(generate, _PATCH_ATTRIBUTE, original_generate)
    setattr(_get_candidate_generator, _PATCH_ATTRIBUTE, original_get_candidate_generator)
    GenerationMixin.generate = generate
    GenerationMixin._get_candidate_generator = _get_candidate_generator


def uninstall() -> None:
    """Restore transformers' own `generate` and `_get_candidate_generator`."""
    with _LOCK:
        if is_installed():
            GenerationMixin.generate = _original(GenerationMixin.generate)
            GenerationMixin._get_candidate_generator = _original(GenerationMixin._get_candidate_generator)


@dataclass
class Routes:
    """Which routes work on the installed transformers (both assumed inside the tested range)."""

    assisted: str | None = None  # None: works; otherwise what changed (calls use the own loop)
    own_loop: str | None = None  # None: works; otherwise what changed (calls that need it raise)


_ROUTES: Routes | None = None
_CHECKING: contextvars.ContextVar[bool] = contextvars.ContextVar("hf_specdecpp_checking", default=False)


def routes() -> Routes:
    """The usable routes, checked by behaviour once per process on a release outside the tested range."""
    global _ROUTES
    if _ROUTES is not None:
        return _ROUTES
    if is_tested_transformers():
        return Routes()
    if _CHECKING.get():  # the check's own generate() calls
        return Routes()
    with _LOCK:
        if _ROUTES is None:
            token = _CHECKING.set(True)
            try:
                found = Routes(upstream.check_assisted_route(), upstream.check_own_loop())
            finally:
                _CHECKING.reset(token)
            if found.assisted is not None and found.own_loop is None:
                warn_once("assisted-fallback",
                          f"hf_specdecpp: on transformers {transformers.__version__} (tested: {TESTED_RANGE}) "
                          f"{found.assisted}. candidate_generator= calls run hf_specdecpp's own decoding loop "
                          "instead (through generate(custom_generate=...)), which gives the same output.",
                          stacklevel=4)
            _ROUTES = found
    return _ROUTES


def reset_routes() -> None:
    """Forget the route check (tests; after transformers was upgraded in place)."""
    global _ROUTES
    with _LOCK:
        _ROUTES = None


def _no_route_error(needed: str, found: Routes) -> UpstreamChangedError:
    reasons = "; ".join(r for r in (found.assisted, found.own_loop) if r)
    return UpstreamChangedError(
        f"hf_specdecpp cannot serve this call on transformers {transformers.__version__} (tested: {TESTED_RANGE}): "
        f"{needed}. What changed: {reasons}. Install a tested transformers release "
        f"(pip install \"transformers{TESTED_RANGE}\") or upgrade hf-specdecpp.")


def _generate_with_method(original_generate, signature: inspect.Signature, model, args, kwargs,
                          method: DecodingMethod):
    if registry.entry_for(method) is None:
        raise TypeError("candidate_generator must be an hf_specdecpp decoding method (e.g. "
                        f"SpecDecPPMethod), got {type(method).__name__}")
    bound = signature.bind_partial(model, *args, **kwargs)
    arguments = bound.arguments
    extra = arguments.setdefault("kwargs", {})
    draft = _resolve_draft(arguments.get("assistant_model"), method)
    if arguments.get("custom_generate") is not None:
        raise ValueError("Pass either candidate_generator= or custom_generate= to generate(), not both.")
    for name in REFUSED_WITH_A_METHOD:
        if extra.get(name) is not None:
            raise ValueError(f"{name}= selects one of transformers' own candidate generators; it cannot be combined "
                             f"with candidate_generator={type(method).__name__}(...). Remove one of them.")
    for key in CACHE_KEYS:  # transformers' assisted decoding would continue from it with a draft that did not
        check_empty_cache(f"{key}=", extra.get(key), "candidate_generator=")
    tokenizer, assistant_tokenizer = extra.get("tokenizer"), extra.get("assistant_tokenizer")
    method.check_models(model, draft, tokenizer, assistant_tokenizer)
    config = _effective_config(model, arguments)
    batch = _batch_size(arguments)
    if batch > 1 and extra.get("attention_mask") is None:
        raise ValueError(f"A batch of {batch} prompts needs an attention_mask (pass the tokenizer's `attention_mask`, "
                         "with left padding), so that padding can be told from text.")
    if (config.num_beams or 1) > 1:
        raise ValueError(f"Speculative decoding does not combine with beam search: got num_beams={config.num_beams} "
                         "(candidate_generator=). Use num_beams=1 (greedy or sampling).")
    # transformers' assisted decoding serves one sequence of a chain method; it takes pairs whose configs differ in
    # vocab_size (padded embeddings) for different tokenizers (upstream issue #45307): those use our own loop
    same_vocab = model.config.get_text_config().vocab_size == draft.config.get_text_config().vocab_size
    assisted = method.kind == "chain" and batch == 1 and (config.num_return_sequences or 1) == 1 and same_vocab
    if assisted and arguments.get("streamer") is not None and config.output_scores \
            and (arguments.get("stopping_criteria") or getattr(config, "stop_strings", None)):
        assisted = False  # criteria reading scores see them only after verification: the own loop streams exactly
    usable = routes()
    if assisted and usable.assisted is not None:
        assisted = False  # transformers changed its assisted decoding: the own loop gives the same output
    if not assisted and usable.own_loop is not None:
        raise _no_route_error("it needs hf_specdecpp's own decoding loop", usable)
    if assisted and getattr(config, "cache_implementation", None) == "static" and not static_cache_croppable():
        raise ValueError("cache_implementation='static' with candidate_generator= needs transformers >= 5.24, whose "
                         "assisted decoding crops static caches (and compiles the verify pass on GPUs). Remove "
                         "cache_implementation, or upgrade transformers.")
    if assisted:
        extra.pop("assistant_tokenizer", None)  # checked above; transformers refuses it for one tokenizer
        return _generate_assisted(original_generate, bound, CallState(method, draft, tokenizer, assistant_tokenizer))
    arguments.pop("assistant_model", None)
    streamer = arguments.pop("streamer", None)
    arguments["custom_generate"] = functools.partial(
        method.decode, draft_model=draft, streamer=streamer, route="candidate_generator=", tokenizer=tokenizer,
        assistant_tokenizer=assistant_tokenizer, models_checked=True)
    return original_generate(*bound.args, **bound.kwargs)


def _generate_assisted(original_generate, bound: inspect.BoundArguments, state: CallState):
    """Run the call in transformers' assisted decoding with the call's candidate generator (see the module
    docstring): criteria, streamer and output wrapped so that a round a criterion stops mid-way ends there."""
    arguments = bound.arguments
    arguments["assistant_model"] = state.draft
    state.stopping_criteria = arguments.get("stopping_criteria")
    arguments["stopping_criteria"] = StoppingCriteriaList([*(state.stopping_criteria or []), StopAfterCut(state)])
    if arguments.get("streamer") is not None:
        arguments["streamer"] = CutStreamer(arguments["streamer"], state)
    token = _ACTIVE.set(state)
    try:
        output = original_generate(*bound.args, **bound.kwargs)
    finally:
        _ACTIVE.reset(token)
    generator = state.generator
    if generator is None:
        raise UpstreamChangedError("transformers did not ask hf_specdecpp for a candidate generator: its "
                                   "assisted decoding changed. Use custom_generate= with this transformers release.")
    if generator.stop_length is not None:
        output = cut_output(output, generator.stop_length, generator.prompt_length)
    state.method.record_stats(generator.stats)
    return with_stats(output, generator.stats)


def _resolve_draft(assistant_model, method: DecodingMethod):
    draft = method.draft_model
    if assistant_model is None and draft is None:
        raise ValueError("candidate_generator= needs a draft model: pass `assistant_model=` to generate() or "
                         f"`draft_model=` to {type(method).__name__}.")
    if assistant_model is not None and draft is not None and assistant_model is not draft:
        raise ValueError("generate() got an `assistant_model` that differs from the candidate generator's "
                         "`draft_model`.")
    return assistant_model if assistant_model is not None else draft


def _effective_config(model, arguments: dict) -> GenerationConfig:
    """The generation config the call will use, for the checks made before generate() runs."""
    config = copy.deepcopy(arguments.get("generation_config") or model.generation_config)
    for key, value in arguments.get("kwargs", {}).items():
        if hasattr(config, key) and not key.startswith("_"):
            setattr(config, key, value)
    return config


def _batch_size(arguments: dict) -> int:
    inputs = arguments.get("inputs")
    if inputs is None:
        inputs = arguments.get("kwargs", {}).get("input_ids")
    shape = getattr(inputs, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) >= 1 else 1
