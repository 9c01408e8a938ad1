"""What every decoding method shares: an immutable description that builds per-call state.

The object a user passes (`candidate_generator=SpecDecPPMethod(head=head)` or
`custom_generate=...`) holds the method's validated config and optional `draft_model`/`streamer`; it never
changes. Each generate() call builds its own state from it (a stop rule, a draft session, statistics), so one
object serves any number of concurrent calls. The statistics of a call come back with the call
(`output.speculation_stats` with `return_dict_in_generate=True`); `method.stats` shows those of the latest call
made in the current thread.

Front doors: transformers calls the method object itself for `custom_generate=` (`__call__`); the generate()
patch (`hf_specdecpp.integration.generate_patch`) serves `candidate_generator=` through `decode` or, for chains
of one sequence, through transformers' assisted decoding with `new_candidate_generator`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from transformers.generation.utils import GenerateDecoderOnlyOutput

from ..core.chain import CallContext, ChainSpec, DecodeResult, SpeculationStats, chain_decode
from ..core.compat import model_kwargs_cache
from ..core.device import input_device
from ..core.pair import check_pair
from ..core.validation import check_empty_cache, check_generation_inputs
from .config_base import MethodConfig, config_from_arguments, fields_doc

if TYPE_CHECKING:
    from transformers import GenerationConfig, LogitsProcessorList, PreTrainedModel, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    from ..core.assisted import ChainCandidateGenerator
    from ..core.drafting import StopRule


@dataclass
class SpeculativeDecoderOnlyOutput(GenerateDecoderOnlyOutput):
    """generate()'s output object with the call's speculative-decoding statistics.

    Args:
        speculation_stats (`SpeculationStats`, *optional*): the call's counts (rounds, drafted and accepted tokens,
            forward passes, per row); every other field is transformers' `GenerateDecoderOnlyOutput`'s.
    """

    speculation_stats: SpeculationStats | None = None


def with_stats(output: Any, stats: SpeculationStats) -> Any:
    """`output` (a generate() output object) carrying `stats`; plain tensors are returned unchanged."""
    if not isinstance(output, GenerateDecoderOnlyOutput):
        return output
    values = {f.name: getattr(output, f.name) for f in fields(output)}
    values.pop("speculation_stats", None)
    return SpeculativeDecoderOnlyOutput(**values, speculation_stats=stats)


def build_output(result: DecodeResult, ctx: CallContext) -> Any:
    """What generate() returns for our own loops: the ids, or an output object when return_dict_in_generate."""
    if not ctx.return_dict:
        return result.sequences
    names = {f.name for f in fields(GenerateDecoderOnlyOutput)}
    values = {"sequences": result.sequences, "scores": result.scores}
    if "logits" in names:
        values["logits"] = result.logits
    values["cache" if "cache" in names else "past_key_values"] = result.cache
    return SpeculativeDecoderOnlyOutput(**values, speculation_stats=result.stats)


class DecodingMethod:
    """Base of every method: immutable after construction, one per-call state per generate() call.

    A subclass names its settings with `config_class` (a `MethodConfig`); the constructor takes them as a config
    object or as the config's fields (positionally in field order, or by name), so no method repeats its fields:
    `FixedKMethod(4)`, `FixedKMethod(num_candidates=4)` and `FixedKMethod(FixedKConfig(4))` are the same method.
    The fields also read as attributes (`method.num_candidates`). The class docstring's `Args:` section lists the
    config's fields (added from their help text).
    """

    kind: ClassVar[str] = ""  # "chain" or "tree"
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    _frozen = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_class" in cls.__dict__ and cls.__doc__ and "    Args:\n" in cls.__doc__:
            cls.__doc__ = _with_config_args(cls.__doc__, cls.config_class)

    def __init__(self, *settings: Any, config: MethodConfig | None = None, draft_model: PreTrainedModel | None = None,
                 streamer: BaseStreamer | None = None, **values: Any):
        self.config = config_from_arguments(self.config_class, settings, values, config)
        self.draft_model = draft_model
        self.streamer = streamer
        self._last = threading.local()
        if draft_model is not None:
            self.check_draft(draft_model)
        self._frozen = True

    def __getattr__(self, name: str) -> Any:  # the config's fields read as attributes: method.threshold
        config = self.__dict__.get("config")
        if config is not None and name in {f.name for f in fields(config)}:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ saving the settings
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> Path:
        """Save the method's config (`MethodConfig.save_pretrained`; a head or draft model is not saved).

        Args:
            save_directory (`str` or `os.PathLike`): the folder to write `decoding_method.json` into.
            kwargs: `config_file_name=`, `overwrite=` of `MethodConfig.save_pretrained`.

        Returns:
            `pathlib.Path`: the file written.
        """
        return self.config.save_pretrained(save_directory, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_path: str | os.PathLike, *args: Any, **kwargs: Any) -> DecodingMethod:
        """The method with the config saved in `pretrained_path` (see `save_pretrained`).

        Args:
            pretrained_path (`str` or `os.PathLike`): the folder (or JSON file) `save_pretrained` wrote.
            args, kwargs: the constructor's other arguments (e.g. `head=`, `draft_model=`); config fields given here
                replace the saved ones.

        Returns:
            `DecodingMethod`: a new method object.
        """
        return cls(*args, config=cls.config_class.from_pretrained(pretrained_path), **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        if self._frozen and not name.startswith("_"):
            raise AttributeError(f"{type(self).__name__} is immutable: create a new one to change {name!r}")
        super().__setattr__(name, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    # ------------------------------------------------------------------ checks
    def check_draft(self, draft: PreTrainedModel) -> None:
        """Raise ValueError when the method cannot use this draft model (overridden by methods with a head)."""

    def check_models(self, target: PreTrainedModel, draft: PreTrainedModel, tokenizer: Any = None,
                     assistant_tokenizer: Any = None) -> None:
        """Raise ValueError before any generation when the pair cannot work with this method.

        Args:
            target (`PreTrainedModel`): the target model.
            draft (`PreTrainedModel`): the draft model.
            tokenizer, assistant_tokenizer (`PreTrainedTokenizerBase`, *optional*): the call's tokenizers.
        """
        check_pair(target, draft, tokenizer, assistant_tokenizer)
        self.check_draft(draft)

    # ------------------------------------------------------------------ statistics of the latest call
    @property
    def stats(self) -> SpeculationStats | None:
        """Statistics of the latest generate() call made with this object in the current thread."""
        return getattr(self._last, "stats", None)

    def record_stats(self, stats: SpeculationStats) -> None:
        self._last.stats = stats

    # ------------------------------------------------------------------ decoding
    def __call__(self, model: PreTrainedModel, input_ids: torch.LongTensor, logits_processor: LogitsProcessorList,
                 stopping_criteria: StoppingCriteriaList, generation_config: GenerationConfig,
                 synced_gpus: bool = False, **model_kwargs) -> Any:
        """The `custom_generate=` front door: transformers calls the method object as its decoding method.

        Args:
            model (`PreTrainedModel`): the target.
            input_ids (`torch.LongTensor` of shape `(batch_size, seq_len)`): the prompt (left-padded in a batch).
            logits_processor (`LogitsProcessorList`): the call's processors.
            stopping_criteria (`StoppingCriteriaList`): the call's stopping criteria.
            generation_config (`GenerationConfig`): the call's generation config.
            synced_gpus (`bool`): must be False.
            model_kwargs: `attention_mask` and the other model inputs generate() passes.

        Returns:
            `torch.LongTensor` of shape `(batch_size, seq_len + new)`, or a `SpeculativeDecoderOnlyOutput` with
            `return_dict_in_generate=True`.
        """
        if self.draft_model is None:
            raise ValueError(
                "With custom_generate=, transformers does not pass `assistant_model` to the decoding method: give "
                f"the draft to the generator, e.g. {type(self).__name__}(..., draft_model=draft).")
        return self.decode(model, input_ids, logits_processor, stopping_criteria, generation_config,
                           draft_model=self.draft_model, streamer=self.streamer, synced_gpus=synced_gpus,
                           route="custom_generate=", **model_kwargs)

    def decode(self, model: PreTrainedModel, input_ids: torch.LongTensor, logits_processor: LogitsProcessorList,
               stopping_criteria: StoppingCriteriaList, generation_config: GenerationConfig, *,
               draft_model: PreTrainedModel, streamer: BaseStreamer | None = None, synced_gpus: bool = False,
               route: str = "candidate_generator=", tokenizer: Any = None, assistant_tokenizer: Any = None,
               models_checked: bool = False, **model_kwargs) -> Any:
        """Run this method's own decoding loop as generate()'s decoding method; returns like generate().

        Args:
            model, input_ids, logits_processor, stopping_criteria, generation_config: as for `__call__`.
            draft_model (`PreTrainedModel`): the draft.
            streamer (`BaseStreamer`, *optional*): receives the prompt, then each accepted token.
            synced_gpus (`bool`): must be False.
            route (`str`): the front door, for error messages.
            tokenizer, assistant_tokenizer (`PreTrainedTokenizerBase`, *optional*): the call's tokenizers.
            models_checked (`bool`): the generate() patch already ran `check_models` for this call.
            model_kwargs: `attention_mask` and the other model inputs.

        Returns:
            `torch.LongTensor` of shape `(batch_size, seq_len + new)`, or a `SpeculativeDecoderOnlyOutput`.
        """
        if synced_gpus:
            raise ValueError(f"hf_specdecpp's decoding loop ({route}) does not support synced_gpus.")
        if not models_checked:
            self.check_models(model, draft_model, tokenizer, assistant_tokenizer)
        check_generation_inputs(input_ids, model_kwargs, generation_config, route)
        if input_ids.shape[0] > 1 and streamer is not None:
            raise ValueError("Streamers take one sequence: stream a batch one prompt at a time.")
        ctx = CallContext.create(model, draft_model, generation_config, logits_processor, streamer, tokenizer,
                                 assistant_tokenizer)
        if input_ids.shape[0] > 1 and (ctx.output_scores or ctx.output_logits):
            raise ValueError("output_scores/output_logits are supported for one sequence per call; the rows of a "
                             "batch advance by different numbers of tokens per round.")
        _, cache = model_kwargs_cache(model_kwargs)  # generate() may have renamed past_key_values= to cache=
        check_empty_cache("past_key_values=/cache=", cache, route)
        for name in ("prompt_lookup_num_tokens", "assistant_early_exit"):
            if getattr(generation_config, name, None) is not None:
                raise ValueError(f"{name}= selects one of transformers' own candidate generators; it cannot be "
                                 f"combined with {type(self).__name__} ({route}). Remove one of them.")
        result = self.run(ctx, input_ids.to(input_device(model)), model_kwargs.get("attention_mask"), stopping_criteria,
                          cache)
        self.record_stats(result.stats)
        return build_output(result, ctx)

    def run(self, ctx: CallContext, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None,
            stopping_criteria: StoppingCriteriaList, cache: Any) -> DecodeResult:
        """The method's decoding loop for one call (each method defines it).

        Args:
            ctx (`CallContext`): the call's models, settings and statistics.
            input_ids (`torch.LongTensor` of shape `(batch_size, seq_len)`): the prompt, on the target's device.
            attention_mask (`torch.Tensor` of shape `(batch_size, seq_len)`, *optional*): its mask.
            stopping_criteria (`StoppingCriteriaList`): the call's stopping criteria.
            cache (`Cache`, *optional*): an empty cache given to generate(), or None.

        Returns:
            `DecodeResult`: sequences, scores/logits when asked for, the cache and the statistics.
        """
        raise NotImplementedError


def _with_config_args(doc: str, config_class: type[MethodConfig]) -> str:
    """A method class's docstring with its config's fields and the common arguments at the end of `Args:`."""
    head, tail = doc.split("    Args:\n", 1)
    head = f"{head.rstrip()}\n\n{_WHAT_IT_IS}\n\n"
    own, rest = ("", tail[1:]) if tail.startswith("\n") else (tail.split("\n\n", 1) + [""])[:2]
    own = f"{own}\n" if own.strip() else ""  # the method's own arguments (e.g. head) come first
    common = _COMMON_ARGS.format(name=config_class.__name__)
    return f"{head}    Args:\n{own}{fields_doc(config_class)}\n{common}\n{rest}"


_WHAT_IT_IS = """\
    An immutable description of the method (its config, plus a head where it takes one), not a
    `transformers.CandidateGenerator`: generate() builds each call's candidate generator or decoding loop from it,
    so one object serves any number of calls, also concurrently. Its former name (`hf_specdecpp.methods.ALIASES`)
    still refers to the same class."""

_COMMON_ARGS = """\
        config (`{name}`, *optional*):
            The settings as one object instead of the fields above (fields given as well replace its values).
        draft_model (`PreTrainedModel`, *optional*):
            The draft: required for `custom_generate=`, optional with `candidate_generator=` (`assistant_model=`).
        streamer (`BaseStreamer`, *optional*):
            A streamer for the `custom_generate=` route (generate() does not forward its own there).
"""


class ChainMethod(DecodingMethod):
    """A method that drafts a chain of candidates per round and differs from the others by its stop rule."""

    kind = "chain"
    rule_class: ClassVar[Callable[[Any], StopRule] | None] = None
    """The stop rule, built per call from the config (`rule_class(config)`), unless `new_rule` is overridden."""

    def new_rule(self, ctx: CallContext) -> StopRule:
        """A fresh stop rule for one call (`rule_class(self.config)`).

        Args:
            ctx (`CallContext`): the call.

        Returns:
            `StopRule`: see `hf_specdecpp.core.drafting.StopRule`.
        """
        if self.rule_class is None:
            raise NotImplementedError(f"{type(self).__name__} sets neither rule_class nor new_rule")
        return self.rule_class(self.config)

    def candidate_bounds(self, ctx: CallContext) -> tuple[int, int]:
        """(min, max) candidates per round for this call."""
        return self.config.min_candidates, self.config.max_candidates

    def chain_spec(self, ctx: CallContext) -> ChainSpec:
        """What the chain loop needs of this method for one call: a stop-rule factory and the bounds per round.

        Args:
            ctx (`CallContext`): the call.

        Returns:
            `ChainSpec`.
        """
        low, high = self.candidate_bounds(ctx)
        return ChainSpec(lambda: self.new_rule(ctx), low, high)

    def run(self, ctx, input_ids, attention_mask, stopping_criteria, cache) -> DecodeResult:
        return chain_decode(ctx, self.chain_spec(ctx), input_ids, attention_mask, stopping_criteria, cache)

    def new_candidate_generator(self, ctx: CallContext, input_ids: torch.LongTensor,
                                attention_mask: torch.Tensor | None,
                                stopping_criteria: StoppingCriteriaList | None = None) -> ChainCandidateGenerator:
        """The per-call candidate generator for transformers' own assisted decoding (one sequence); it offers
        each token to `stopping_criteria` (the call's) as the target alone would.

        Args:
            ctx (`CallContext`): the call's models, settings and statistics.
            input_ids (`torch.LongTensor` of shape `(1, seq_len)`): the prompt.
            attention_mask (`torch.Tensor` of shape `(1, seq_len)`, *optional*): its mask.
            stopping_criteria (`StoppingCriteriaList`, *optional*): the call's stopping criteria.

        Returns:
            `ChainCandidateGenerator`: a `transformers.CandidateGenerator` for this call only.
        """
        from ..core.assisted import ChainCandidateGenerator

        return ChainCandidateGenerator(ctx, self.chain_spec(ctx), input_ids, attention_mask, stopping_criteria)
