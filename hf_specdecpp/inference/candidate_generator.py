"""Candidate generators that draft with their own lean loop and stop by a per-token rule.

transformers' `AssistedCandidateGenerator` drafts by calling the assistant's full `generate()` each round and
can only stop on `(input_ids, scores)`. SpecDec++ needs the draft's last hidden state at every step, so these
generators keep the parent's bookkeeping (assistant kwargs, copied generation config, logits processors) and
replace the drafting itself with a direct forward loop over the draft's KV cache.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache, LogitsProcessorList
from transformers.generation.candidate_generator import AssistedCandidateGenerator

from ..head import DEFAULT_MAX_CANDIDATES, AcceptanceHead
from .stats import SpeculationStats
from .stopping import RejectionThresholdCriteria, validate_stopping_args
from .validation import check_pair, check_single_sequence

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedModel
    from transformers.generation.streamers import BaseStreamer

DEFAULT_THRESHOLD = 0.7


class DraftLoopCandidateGenerator(AssistedCandidateGenerator):
    """Base class: drafts token by token with the draft model and asks `_should_stop` after every token.

    Built before `generate()` and bound to the call's generation config, logits processors and inputs by
    `bind()` (which runs `AssistedCandidateGenerator.__init__`). One object serves one generate() call at a
    time and can be reused for later calls; its `stats` describe the latest call.
    """

    def __init__(
        self,
        draft_model: PreTrainedModel | None = None,
        min_candidates: int = 1,
        max_candidates: int = 20,
        streamer: BaseStreamer | None = None,
    ):
        # AssistedCandidateGenerator.__init__ needs the call's inputs: it runs in `bind()`.
        self.draft_model = draft_model
        self.min_candidates = min_candidates
        self.max_candidates = max_candidates
        self.streamer = streamer  # used by the `custom_generate=` route, where generate() drops its streamer
        self.stats = SpeculationStats()
        self._lock = threading.Lock()
        self._in_use = False
        self._prompt_length = 0
        self._prompt_mask: torch.Tensor | None = None

    # ------------------------------------------------------------------ binding to one generate() call
    def check_models(self, target: PreTrainedModel, draft: PreTrainedModel) -> None:
        """Raise ValueError before any generation when the pair cannot work with this generator."""
        check_pair(target, draft)

    def acquire(self) -> None:
        """Mark the generator as serving a generate() call; two concurrent calls cannot share one."""
        with self._lock:
            if self._in_use:
                raise RuntimeError(
                    f"This {type(self).__name__} is already serving another generate() call. Create one "
                    "candidate generator per concurrent generate() call."
                )
            self._in_use = True

    def release(self) -> None:
        with self._lock:
            self._in_use = False

    def bind(
        self,
        target: PreTrainedModel,
        input_ids: torch.LongTensor,
        assistant_model: PreTrainedModel | None,
        generation_config: GenerationConfig,
        model_kwargs: dict,
        inputs_tensor: torch.Tensor | None,
        logits_processor: LogitsProcessorList | None,
    ) -> "DraftLoopCandidateGenerator":
        """Prepare for one generate() call (the role of `AssistedCandidateGenerator.__init__`)."""
        draft = assistant_model if assistant_model is not None else self.draft_model
        if draft is None:
            raise ValueError(
                f"{type(self).__name__} needs a draft model: pass `assistant_model=` to generate() or "
                f"`draft_model=` to {type(self).__name__}."
            )
        check_single_sequence(input_ids, generation_config)
        self.check_models(target, draft)
        super().__init__(
            input_ids=input_ids,
            assistant_model=draft,
            generation_config=generation_config,
            model_kwargs=model_kwargs,
            inputs_tensor=inputs_tensor,
            logits_processor=logits_processor,
        )
        self.logits_processor = LogitsProcessorList(self.logits_processor)
        self.do_sample = bool(generation_config.do_sample)
        eos = getattr(generation_config, "_eos_token_tensor", None)
        self.eos_token_ids = eos.to(draft.device) if eos is not None else None
        self._prompt_length = input_ids.shape[1]
        mask = self.assistant_kwargs.get("attention_mask")
        self._prompt_mask = mask.to(draft.device) if mask is not None and not bool(mask.all()) else None
        self.stats = SpeculationStats()
        self._setup_round_state(draft)
        return self

    def _setup_round_state(self, draft: PreTrainedModel) -> None:
        """Hook for subclasses: move helpers to the draft's device, reset per-call state."""

    # ------------------------------------------------------------------ the drafting loop
    def _should_stop(
        self, step: int, hidden: torch.Tensor, scores: torch.Tensor, sequence: torch.LongTensor
    ) -> torch.Tensor:
        """Return a bool tensor: stop drafting after the token just drafted at `step` (0-based)?

        `hidden` is the draft's last hidden state at the last INPUT position of this step's forward pass,
        i.e. at the previous drafted token (or the last verified token when `step == 0`).
        """
        raise NotImplementedError

    def _start_round(self) -> None:
        """Hook for subclasses: reset per-round state."""

    def _draft_forward(self, new_ids: torch.LongTensor, cache: DynamicCache):
        kwargs = {}
        if self._prompt_mask is not None:
            total = cache.get_seq_length() + new_ids.shape[1]
            ones = self._prompt_mask.new_ones((1, total - self._prompt_mask.shape[1]))
            kwargs["attention_mask"] = torch.cat([self._prompt_mask, ones], dim=-1)
        self.stats.draft_forwards += 1
        return self.assistant_model(
            input_ids=new_ids,
            past_key_values=cache,
            use_cache=True,
            output_hidden_states=True,
            logits_to_keep=1,
            **kwargs,
        )

    def _sync_cache(self, input_ids: torch.LongTensor) -> tuple[DynamicCache, torch.LongTensor]:
        """Crop the draft cache to the tokens both it and `input_ids` agree on; return the tokens to feed."""
        cache = self.assistant_kwargs.get("past_key_values")
        if cache is None:
            cache = DynamicCache(config=self.assistant_model.config)
            self.assistant_kwargs["past_key_values"] = cache
        cached = cache.get_seq_length()
        # Cached tokens are the previous input plus drafts 1..K-1; everything beyond the accepted prefix
        # (and always the newest token, so that the forward pass yields logits) is recomputed.
        keep = min(cached, input_ids.shape[1] - 1)
        if cached > keep:
            cache.crop(keep - cached)
        return cache, input_ids[:, keep:]

    @torch.no_grad()
    def get_candidates(self, input_ids: torch.LongTensor, **kwargs) -> tuple[torch.LongTensor, torch.Tensor | None]:
        """Draft up to `max_candidates` tokens; return the full sequence and the processed draft scores."""
        input_ids = input_ids.to(self.assistant_model.device)
        self.stats.rounds += 1
        self.stats.target_forwards += 1  # the assisted loop runs the target once per round
        max_new = min(self.max_candidates, self.main_model_max_length - input_ids.shape[1] - 1)
        if max_new <= 0:
            self.stats.candidate_lengths.append(0)
            return input_ids, None
        cache, new_ids = self._sync_cache(input_ids)
        self._start_round()
        sequence = input_ids
        all_scores = []
        for step in range(max_new):
            outputs = self._draft_forward(new_ids, cache)
            hidden = outputs.hidden_states[-1][:, -1]
            scores = self.logits_processor(sequence, outputs.logits[:, -1].float())
            if self.do_sample:
                token = torch.multinomial(scores.softmax(dim=-1), num_samples=1)
            else:
                token = scores.argmax(dim=-1, keepdim=True)
            sequence = torch.cat([sequence, token], dim=-1)
            all_scores.append(scores)
            if step + 1 == max_new:
                break
            stop = self._should_stop(step, hidden, scores, sequence)
            if self.eos_token_ids is not None:
                stop = stop | torch.isin(token[:, 0], self.eos_token_ids)
            if bool(stop.any()):  # the one host sync per drafted token
                break
            new_ids = token
        num_drafted = sequence.shape[1] - input_ids.shape[1]
        self.stats.drafted_tokens += num_drafted
        self.stats.candidate_lengths.append(num_drafted)
        return sequence, torch.stack(all_scores, dim=1)

    def update_candidate_strategy(self, input_ids: torch.LongTensor, scores: torch.Tensor, num_matches: int):
        """Record the round's outcome (the stopping rule itself needs no update)."""
        num_matches = int(num_matches)
        self.stats.accepted_tokens += num_matches
        self.stats.accepted_lengths.append(num_matches)
        self.stats.new_tokens = input_ids.shape[1] - self._prompt_length

    # ------------------------------------------------------------------ the `custom_generate=` route
    def __call__(self, model, input_ids, logits_processor, stopping_criteria, generation_config, **model_kwargs):
        """Decode with this generator through transformers' public `custom_generate=` hook (no patching)."""
        from .speculative_loop import speculative_decode

        return speculative_decode(
            model,
            input_ids,
            candidate_generator=self,
            logits_processor=logits_processor,
            stopping_criteria=stopping_criteria,
            generation_config=generation_config,
            streamer=self.streamer,
            **model_kwargs,
        )


class SpecDecPPCandidateGenerator(DraftLoopCandidateGenerator):
    """SpecDec++: stop drafting when the acceptance head's predicted P(any rejection) exceeds `threshold`.

    Args:
        head: the trained `AcceptanceHead` for this draft/target pair.
        threshold: h in (0, 1); defaults to the head's `recommended_threshold`, else 0.7.
        min_candidates / max_candidates: bounds on the candidates per round; max_candidates defaults to the
            head's `recommended_max_candidates` (chosen by calibration), else 20.
        draft_model: the draft, when it is not passed to generate() as `assistant_model`.
        streamer: a streamer for the `custom_generate=` route (generate() does not forward its own there).

    Usage: `target.generate(**inputs, assistant_model=draft, candidate_generator=SpecDecPPCandidateGenerator(
    head=head, threshold=0.7))`. After the call, `generator.stats` holds the round statistics.
    """

    def __init__(
        self,
        head: AcceptanceHead,
        threshold: float | None = None,
        min_candidates: int = 1,
        max_candidates: int | None = None,
        draft_model: PreTrainedModel | None = None,
        streamer: BaseStreamer | None = None,
    ):
        check_head_type(head)
        if threshold is None:
            threshold = head.recommended_threshold if head.recommended_threshold is not None else DEFAULT_THRESHOLD
        if max_candidates is None:
            recommended = getattr(head, "recommended_max_candidates", None)
            max_candidates = recommended if recommended is not None else DEFAULT_MAX_CANDIDATES
        validate_stopping_args(threshold, min_candidates, max_candidates)
        super().__init__(draft_model, min_candidates, max_candidates, streamer)
        self.head = head
        self.threshold = float(threshold)
        self.criteria = RejectionThresholdCriteria(threshold, min_candidates, max_candidates)
        if draft_model is not None:
            check_head_fits(head, draft_model)

    def check_models(self, target: PreTrainedModel, draft: PreTrainedModel) -> None:
        super().check_models(target, draft)
        check_head_fits(self.head, draft)

    def _setup_round_state(self, draft: PreTrainedModel) -> None:
        self.head.to(device=draft.device, dtype=torch.float32)
        self.head.eval()

    def _start_round(self) -> None:
        self.criteria.start_round()

    def _should_stop(self, step, hidden, scores, sequence):
        if step == 0 and not self.head.scores_without_lag:
            acceptance = None  # the lagged score would be the verified token's, which counts as accepted
        else:
            acceptance = self.head.score_step(hidden, scores, sequence[:, -1])
        return self.criteria(sequence, scores, acceptance_prob=acceptance)


def check_head_type(head: AcceptanceHead | None, optional: bool = False) -> None:
    """`head` must be an AcceptanceHead (a module with a `hidden_size`), or None when `optional`."""
    if optional and head is None:
        return
    if not isinstance(head, torch.nn.Module) or not hasattr(head, "hidden_size"):
        expected = "an AcceptanceHead or None" if optional else "an AcceptanceHead"
        raise TypeError(f"head must be {expected}, got {type(head).__name__}")


def check_head_fits(head: AcceptanceHead, draft: PreTrainedModel) -> None:
    """The head reads the draft's last hidden state: their sizes must agree."""
    draft_hidden = draft.config.get_text_config().hidden_size
    if head.hidden_size != draft_hidden:
        raise ValueError(
            f"The acceptance head expects hidden size {head.hidden_size}, but the draft model "
            f"({type(draft).__name__}) has hidden size {draft_hidden}. Use a head trained for this draft model."
        )
