"""DySpec: dynamic draft trees, optionally guided by the SpecDec++ acceptance head."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...core.device import input_device
from ...head import AcceptanceHead, head_on
from ..base import DecodingMethod
from ..specdecpp.generator import check_head_fits, check_head_type
from .config import DySpecConfig
from .loop import tree_decode
from .probe import check_tree_support

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class DySpecMethod(DecodingMethod):
    """Grow a draft token tree of up to `budget` nodes per round and verify it with one target forward pass.

    The tree grows level by level, best estimate first (`growth.py`): without a head a node is worth the draft
    probability of its path (DySpec); with `head=` the head's acceptance prediction replaces the draft's for
    each first child. Greedy decoding accepts the longest path of target argmax tokens; sampling uses recursive
    rejection sampling over each node's children (`verify.py`), exact because no child's admission to the tree
    depends on its own draw. Only the accepted path stays in both caches. One sequence per call.

    Args:
        head (`AcceptanceHead`, *optional*):
            An acceptance head for this draft model that guides the growth (keyword only).

    Example:

    ```python
    target.generate(**inputs, assistant_model=draft, candidate_generator=DySpecMethod(budget=16))
    target.generate(**inputs, custom_generate=DySpecMethod(budget=16, draft_model=draft))
    ```
    """

    kind = "tree"
    config_class = DySpecConfig

    def __init__(self, *settings: Any, head: AcceptanceHead | None = None, **kwargs: Any):
        check_head_type(head, optional=True)
        self.head = head
        super().__init__(*settings, **kwargs)

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


DySpecCandidateGenerator = DySpecMethod
"""The former name of `DySpecMethod` (kept working)."""
