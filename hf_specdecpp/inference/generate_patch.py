"""The one place where hf_specdecpp patches transformers: a `candidate_generator=` argument for generate().

transformers has no public hook to supply a custom `CandidateGenerator` to assisted generation:
`generate()` rejects unknown keyword arguments and `GenerationMixin._get_candidate_generator` picks a
generator by hard-coded branches. This module wraps both, once, at import of `hf_specdecpp`:

- `generate(..., candidate_generator=gen)` stores `gen` in a context variable (per thread and task) for the
  duration of that call only, supplies `assistant_model=gen.draft_model` when none was passed, and always
  clears it again, also after an exception;
- `_get_candidate_generator` returns the stored generator, bound to the call, when there is one, and
  otherwise defers to the original. Without `candidate_generator=` both wrappers call the originals unchanged.
- A tree generator (`DySpecCandidateGenerator`) cannot go through transformers' assisted decoding, which
  verifies a chain. For it, `generate(..., candidate_generator=gen)` becomes `generate(...,
  custom_generate=<gen's tree decoding loop, given the draft and the streamer>)`: the same loop as the
  public `custom_generate=gen` route, and `_get_candidate_generator` is not involved.

The patch is version-guarded (see `compat.py`), idempotent, and `verify_upstream()` checks the private
details it relies on; the test suite calls it so that a transformers change fails loudly.
`uninstall()` restores the originals. The patch-free alternative is `custom_generate=generator`.
"""

from __future__ import annotations

import contextvars
import functools
import inspect

from transformers.generation.candidate_generator import CandidateGenerator
from transformers.generation.utils import GenerationMixin

from ..compat import check_transformers_version
from .tree import DySpecCandidateGenerator
from .validation import check_tokenizers

_PATCH_ATTRIBUTE = "__hf_specdecpp_original__"
_ACTIVE_GENERATOR: contextvars.ContextVar = contextvars.ContextVar("hf_specdecpp_candidate_generator", default=None)

# The parameters of `_get_candidate_generator` that the wrapper forwards (transformers 5.23).
EXPECTED_GET_CANDIDATE_GENERATOR_PARAMS = (
    "self",
    "generation_config",
    "input_ids",
    "inputs_tensor",
    "logits_processor",
    "model_kwargs",
    "assistant_model",
    "target_tokenizer",
    "assistant_tokenizer",
)


def verify_upstream() -> None:
    """Raise RuntimeError when transformers' private plumbing differs from what the patch relies on."""
    check_transformers_version()
    get_generator = _original(GenerationMixin._get_candidate_generator)
    params = tuple(inspect.signature(get_generator).parameters)
    if params != EXPECTED_GET_CANDIDATE_GENERATOR_PARAMS:
        raise RuntimeError(
            "transformers' GenerationMixin._get_candidate_generator changed its parameters to "
            f"{params}; hf_specdecpp expects {EXPECTED_GET_CANDIDATE_GENERATOR_PARAMS}."
        )
    source = inspect.getsource(GenerationMixin._assisted_decoding)
    for needle in ("self._get_candidate_generator(", "candidate_generator.get_candidates(",
                   "candidate_generator.update_candidate_strategy("):
        if needle not in source:
            raise RuntimeError(f"transformers' assisted decoding no longer calls `{needle}...)`.")
    generate_params = inspect.signature(_original(GenerationMixin.generate)).parameters
    if "assistant_model" not in generate_params or "candidate_generator" in generate_params:
        raise RuntimeError("transformers' generate() signature changed around `assistant_model`/`candidate_generator`.")
    if "custom_generate" not in generate_params or "streamer" not in generate_params:
        raise RuntimeError("transformers' generate() no longer takes `custom_generate`/`streamer` (tree routing).")


def _original(function):
    return getattr(function, _PATCH_ATTRIBUTE, function)


def is_installed() -> bool:
    return hasattr(GenerationMixin.generate, _PATCH_ATTRIBUTE)


def active_candidate_generator():
    """The candidate generator of the generate() call running in this context, if any."""
    return _ACTIVE_GENERATOR.get()


def install() -> None:
    """Add `candidate_generator=` to `generate()`. Safe to call more than once."""
    if is_installed():
        return
    verify_upstream()
    original_generate = GenerationMixin.generate
    original_get_candidate_generator = GenerationMixin._get_candidate_generator
    generate_signature = inspect.signature(original_generate)

    @functools.wraps(original_generate)
    def generate(self, *args, candidate_generator: CandidateGenerator | None = None, **kwargs):
        if candidate_generator is None:
            return original_generate(self, *args, **kwargs)
        if not isinstance(candidate_generator, CandidateGenerator) or not hasattr(candidate_generator, "bind"):
            raise TypeError(
                "candidate_generator must be an hf_specdecpp candidate generator (e.g. "
                f"SpecDecPPCandidateGenerator), got {type(candidate_generator).__name__}"
            )
        bound = generate_signature.bind_partial(self, *args, **kwargs)
        assistant_model = bound.arguments.get("assistant_model")
        draft = candidate_generator.draft_model
        if assistant_model is None and draft is None:
            raise ValueError(
                "candidate_generator= needs a draft model: pass `assistant_model=` to generate() or "
                f"`draft_model=` to {type(candidate_generator).__name__}."
            )
        if assistant_model is not None and draft is not None and assistant_model is not draft:
            raise ValueError(
                "generate() got an `assistant_model` that differs from the candidate generator's `draft_model`."
            )
        candidate_generator.check_models(self, assistant_model or draft)
        if isinstance(candidate_generator, DySpecCandidateGenerator):
            return _generate_with_tree(original_generate, bound, candidate_generator, assistant_model or draft)
        if assistant_model is None:
            kwargs["assistant_model"] = draft
        candidate_generator.acquire()
        token = _ACTIVE_GENERATOR.set(candidate_generator)
        try:
            return original_generate(self, *args, **kwargs)
        finally:
            _ACTIVE_GENERATOR.reset(token)
            candidate_generator.release()

    @functools.wraps(original_get_candidate_generator)
    def _get_candidate_generator(
        self,
        generation_config,
        input_ids,
        inputs_tensor,
        logits_processor,
        model_kwargs,
        assistant_model=None,
        target_tokenizer=None,
        assistant_tokenizer=None,
    ):
        generator = _ACTIVE_GENERATOR.get()
        if generator is None:
            return original_get_candidate_generator(
                self, generation_config, input_ids, inputs_tensor, logits_processor, model_kwargs,
                assistant_model, target_tokenizer, assistant_tokenizer,
            )
        from .validation import check_tokenizers

        check_tokenizers(target_tokenizer, assistant_tokenizer)
        return generator.bind(
            target=self,
            input_ids=input_ids,
            assistant_model=assistant_model,
            generation_config=generation_config,
            model_kwargs=model_kwargs,
            inputs_tensor=inputs_tensor,
            logits_processor=logits_processor,
        )

    setattr(generate, _PATCH_ATTRIBUTE, original_generate)
    setattr(_get_candidate_generator, _PATCH_ATTRIBUTE, original_get_candidate_generator)
    GenerationMixin.generate = generate
    GenerationMixin._get_candidate_generator = _get_candidate_generator


def _generate_with_tree(original_generate, bound: inspect.BoundArguments, generator: DySpecCandidateGenerator,
                        draft) -> object:
    """Run a tree generator's own decoding loop as generate()'s `custom_generate=` decoding method.

    generate() passes neither `assistant_model` nor `streamer` to such a method, so they are taken out of the
    call and bound to the loop; generate() still prepares everything else (config, processors, criteria, cache).
    """
    arguments = bound.arguments
    if arguments.get("custom_generate") is not None:
        raise ValueError("Pass either candidate_generator= or custom_generate= to generate(), not both.")
    extra = arguments.get("kwargs", {})
    check_tokenizers(extra.get("tokenizer"), extra.get("assistant_tokenizer"))
    arguments.pop("assistant_model", None)
    streamer = arguments.pop("streamer", None)
    arguments["custom_generate"] = functools.partial(generator.decode, draft_model=draft, streamer=streamer)
    return original_generate(*bound.args, **bound.kwargs)


def uninstall() -> None:
    """Restore transformers' own `generate` and `_get_candidate_generator`."""
    if not is_installed():
        return
    GenerationMixin.generate = _original(GenerationMixin.generate)
    GenerationMixin._get_candidate_generator = _original(GenerationMixin._get_candidate_generator)
