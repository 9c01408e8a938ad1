"""What one generate() call fixes for its whole duration: the models, decoding settings, processors, limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .pair import VocabMap, check_pair
from .processing import reads_token_ids

if TYPE_CHECKING:
    from transformers import GenerationConfig, LogitsProcessorList, PreTrainedModel
    from transformers.generation.streamers import BaseStreamer


@dataclass
class CallContext:
    """The fixed facts of one generate() call, shared by the draft session, the verifier and the loop."""

    target: PreTrainedModel
    draft: PreTrainedModel
    vocab: VocabMap
    logits_processor: LogitsProcessorList
    do_sample: bool
    eos_token_ids: torch.Tensor | None
    pad_token_id: int
    max_length: int
    streamer: BaseStreamer | None = None
    output_scores: bool = False
    output_logits: bool = False
    return_dict: bool = False

    @classmethod
    def create(cls, target: PreTrainedModel, draft: PreTrainedModel, generation_config: GenerationConfig,
               logits_processor: LogitsProcessorList, streamer: BaseStreamer | None = None,
               tokenizer: Any = None, assistant_tokenizer: Any = None) -> "CallContext":
        vocab = check_pair(target, draft, tokenizer, assistant_tokenizer)
        eos = getattr(generation_config, "_eos_token_tensor", None)
        if eos is None and generation_config.eos_token_id is not None:
            ids = generation_config.eos_token_id
            eos = torch.tensor([ids] if isinstance(ids, int) else list(ids))
        pad = generation_config.pad_token_id
        if pad is None:
            pad = int(eos.reshape(-1)[0]) if eos is not None and eos.numel() else 0
        return_dict = bool(generation_config.return_dict_in_generate)
        return cls(
            target=target, draft=draft, vocab=vocab, logits_processor=logits_processor,
            do_sample=bool(generation_config.do_sample), eos_token_ids=eos,
            pad_token_id=int(pad.reshape(-1)[0]) if isinstance(pad, torch.Tensor) else int(pad),
            max_length=int(generation_config.max_length), streamer=streamer,
            output_scores=return_dict and bool(generation_config.output_scores),
            output_logits=return_dict and bool(getattr(generation_config, "output_logits", False)),
            return_dict=return_dict,
        )

    @property
    def processors_read_ids(self) -> bool:
        return reads_token_ids(self.logits_processor)
