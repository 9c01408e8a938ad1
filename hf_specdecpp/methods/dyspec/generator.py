"""DySpec: dynamic draft trees, optionally guided by the SpecDec++ acceptance head."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...core.device import input_device
from ...head import AcceptanceHead, head_on
from ..base import DecodingMethod
from ..specdecpp.generator import check_head_fits, check_head_type
from .config import DySpecConfig
from .loop import tree_decode
from .probe import check_tree_support

if TYPE_CHECKING:
    from transformers import PreTrainedModel
    from transformers.generation.streamers import BaseStreamer


class DySpecCandidateGenerator(DecodingMethod):
    """Grow a draft token tree of up to `budget` nodes per round and verify it with one target forward pass.

    The tree grows level by level, best estimate first (`growth.py`): without a head a node is worth the draft
    probability of its path (DySpec); with `head=` the head's acceptance prediction replaces the draft's for
    each first child. Greedy decoding accepts the longest path of target argmax tokens; sampling uses recursive
    rejection sampling over each node's children (`verify.py`), exact because no child's admission to the tree
    depends on its own draw. Only the accepted path stays in both caches.

    Args:
        budget: drafted nodes per round (>= 1). `budget=1` drafts one token per round.
        head: an optional `AcceptanceHead` for this draft model.
        max_depth: an optional limit on the tree depth (tokens accepted per round).
        cost_ratio: optional draft step / target step: growth stops once another level of draft passes cannot
            raise the expected tokens per unit of time (`growth.worth_another_level`).
        draft_model: the draft, required for `custom_generate=`, optional with `candidate_generator=`.
        streamer: a streamer for the `custom_generate=` route.

    Usage: `target.generate(**inputs, assistant_model=draft, candidate_generator=DySpecCandidateGenerator(
    budget=16))` or `target.generate(**inputs, custom_generate=DySpecCandidateGenerator(budget=16,
    draft_model=draft))`. One sequence per call.
    """

    kind = "tree"

    def __init__(self, budget: int = 16, head: AcceptanceHead | None = None, max_depth: int | None = None,
                 cost_ratio: float | None = None, draft_model: PreTrainedModel | None = None,
                 streamer: BaseStreamer | None = None):
        check_head_type(head, optional=True)
        self.head = head
        super().__init__(DySpecConfig(budget, max_depth, cost_ratio), draft_model, streamer)

    @property
    def budget(self) -> int:
        return self.config.budget

    def check_draft(self, draft: PreTrainedModel) -> None:
        if self.head is not None:
            check_head_fits(self.head, draft)

    def check_models(self, target: PreTrainedModel, draft: PreTrainedModel, tokenizer=None,
                     assistant_tokenizer=None) -> None:
        super().check_models(target, draft, tokenizer, assistant_tokenizer)
        check_tree_support(target, "target")
        check_tree_support(draft, "draft")

    def run(self, ctx, input_ids, attention_mask, stopping_criteria, cache):
        if input_ids.shape[0] != 1:
            raise ValueError(f"DySpec tree decoding takes one sequence per call (got {input_ids.shape[0]}, e.g. from "
                             "a batch or num_return_sequences > 1): call generate() once per sequence, or use a "
                             "chain method (SpecDec++, fixed K), which decodes batches.")
        head = head_on(self.head, input_device(ctx.draft)) if self.head is not None else None
        return tree_decode(ctx, self.config, head, input_ids, attention_mask, stopping_criteria)
