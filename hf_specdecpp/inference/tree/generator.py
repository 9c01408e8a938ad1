"""DySpec: dynamic draft trees, optionally guided by the SpecDec++ acceptance head."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...head import AcceptanceHead
from ..candidate_generator import DraftLoopCandidateGenerator, check_head_fits, check_head_type
from ..validation import check_tree_support
from .cache import compact_cache
from .growth import child_candidates, grow_tree
from .loop import tree_decode
from .tree import ROOT, DraftTree, additive_mask, causal_rows, node_positions, node_rows, prefix_layout
from .verify import recursive_rejection

if TYPE_CHECKING:
    from transformers import DynamicCache, PreTrainedModel
    from transformers.generation.streamers import BaseStreamer


class DySpecCandidateGenerator(DraftLoopCandidateGenerator):
    """Grow a draft token tree of up to `budget` nodes per round and verify it with one target forward pass.

    The tree grows best-first by the estimated probability that the target accepts the path to a node
    (`growth.py`): the product of draft probabilities along the path (DySpec), or, with `head=`, the head's
    predicted acceptance for each first child (the chain continuation) and the rejected remainder shared among
    the later children by draft probability. Greedy decoding accepts the longest path of target argmax tokens;
    sampling uses multi-draft speculative sampling over each node's children (`verify.py`), which keeps the
    target's distribution exactly. Only the accepted path's keys/values stay in both caches.

    Args:
        budget: drafted nodes per round (>= 1). `budget=1` drafts one token per round.
        head: an optional `AcceptanceHead` for this draft model.
        max_depth: an optional limit on the tree depth (tokens accepted per round).
        cost_ratio: optional draft/target forward-time ratio. When given, each round also stops growing once
            the best candidate no longer raises the expected tokens per unit of time (`growth.worth_adding`),
            so the tree size is chosen per round, up to `budget`.
        draft_model: the draft, required for `custom_generate=`, optional with `candidate_generator=`.
        streamer: a streamer for the `custom_generate=` route (generate() does not forward its own there).

    Usage: `target.generate(**inputs, assistant_model=draft, candidate_generator=DySpecCandidateGenerator(
    budget=16))` or `target.generate(**inputs, custom_generate=DySpecCandidateGenerator(budget=16,
    draft_model=draft))`. `generator.stats` then holds the round statistics, with `tree_sizes` and
    `accepted_child_ranks`; `generator.last_tree` is the last round's tree.
    """

    def __init__(
        self,
        budget: int = 16,
        head: AcceptanceHead | None = None,
        max_depth: int | None = None,
        cost_ratio: float | None = None,
        draft_model: PreTrainedModel | None = None,
        streamer: BaseStreamer | None = None,
    ):
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be an integer >= 1 (drafted tree nodes per round), got {budget!r}")
        if max_depth is not None and (isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1):
            raise ValueError(f"max_depth must be None or an integer >= 1, got {max_depth!r}")
        valid_ratio = isinstance(cost_ratio, (int, float)) and not isinstance(cost_ratio, bool) and cost_ratio > 0
        if cost_ratio is not None and not valid_ratio:
            raise ValueError(f"cost_ratio must be None or a number > 0 (draft time / target time), got {cost_ratio!r}")
        check_head_type(head, optional=True)
        super().__init__(draft_model, min_candidates=1, max_candidates=budget, streamer=streamer)
        self.budget = budget
        self.head = head
        self.max_depth = max_depth
        self.cost_ratio = None if cost_ratio is None else float(cost_ratio)
        self.last_tree: DraftTree | None = None
        self._eos: set[int] = set()
        if draft_model is not None:
            check_tree_support(draft_model, "draft")
            if head is not None:
                check_head_fits(head, draft_model)

    # ------------------------------------------------------------------ binding to one generate() call
    def check_models(self, target: PreTrainedModel, draft: PreTrainedModel) -> None:
        super().check_models(target, draft)
        check_tree_support(target, "target")
        check_tree_support(draft, "draft")
        if self.head is not None:
            check_head_fits(self.head, draft)

    def _setup_round_state(self, draft: PreTrainedModel) -> None:
        if self.head is not None:
            self.head.to(device=draft.device, dtype=torch.float32)
            self.head.eval()
        self._eos = set(self.eos_token_ids.tolist()) if self.eos_token_ids is not None else set()
        self.last_tree = None

    def get_candidates(self, input_ids, **kwargs):
        raise RuntimeError(
            "DySpecCandidateGenerator drafts a tree, which transformers' assisted decoding (a chain verifier) "
            "cannot check. Use generate(candidate_generator=...) after `import hf_specdecpp`, or "
            "generate(custom_generate=...): both run hf_specdecpp's tree decoding loop."
        )

    # ------------------------------------------------------------------ drafting
    @torch.no_grad()
    def grow(self, input_ids: torch.LongTensor) -> DraftTree:
        """Grow this round's draft tree under `input_ids` (its root is their last token)."""
        draft = self.assistant_model
        input_ids = input_ids.to(draft.device)
        length = input_ids.shape[1]
        tree = DraftTree(int(input_ids[0, -1]))
        max_depth = self.main_model_max_length - length - 1  # accepted tokens + the target's own must fit
        if self.max_depth is not None:
            max_depth = min(max_depth, self.max_depth)
        visible, positions = prefix_layout(self._prompt_mask, length, draft.device)

        def expand(node: int) -> None:
            if node == ROOT:
                cache, new_ids = self._sync_cache(input_ids)
                start = length - new_ids.shape[1]
                allowed, node_position = causal_rows(visible, start, length), positions[start:]
                tree.slots[ROOT] = length - 1
            else:
                cache = self.assistant_kwargs["past_key_values"]
                tree.slots[node] = cache.get_seq_length()
                new_ids = torch.tensor([[tree.tokens[node]]], device=draft.device)
                allowed = node_rows(tree, [node], tree.slots, visible, tree.slots[node] + 1)
                node_position = node_positions(tree, [node], positions[-1])
            outputs = self._tree_forward(new_ids, allowed, node_position, cache)
            path = torch.tensor([tree.path_tokens(node)], dtype=torch.long, device=draft.device)
            scores = self.logits_processor(torch.cat([input_ids, path], dim=-1), outputs.logits[:, -1].float())
            tree.probs[node] = scores.softmax(dim=-1)[0]
            tree.child_tokens[node], tree.child_probs[node] = child_candidates(
                tree.probs[node], self.budget, self.do_sample
            )
            if self.head is not None:
                hidden = outputs.hidden_states[-1][:, -1]
                if self.head.scores_without_lag:
                    if tree.child_tokens[node]:
                        first = torch.tensor(tree.child_tokens[node][:1], device=scores.device)
                        tree.first_child_accept[node] = float(self.head.predict_drafted(hidden, scores, first))
                elif node != ROOT:
                    tree.accept[node] = float(self.head(hidden[0].float()))

        def expandable(node: int) -> bool:
            return tree.depths[node] < max_depth and (node == ROOT or tree.tokens[node] not in self._eos)

        return grow_tree(tree, self.budget, expand, expandable, self.cost_ratio)

    def _tree_forward(self, new_ids: torch.LongTensor, allowed: torch.Tensor, positions: torch.Tensor,
                      cache: DynamicCache):
        self.stats.draft_forwards += 1
        return self.assistant_model(
            input_ids=new_ids,
            attention_mask=additive_mask(allowed, self.assistant_model.dtype),
            position_ids=positions[None],
            past_key_values=cache,
            use_cache=True,
            output_hidden_states=self.head is not None,
            logits_to_keep=1,
        )

    # ------------------------------------------------------------------ verification and bookkeeping
    def child_acceptance(self, p: torch.Tensor, q: torch.Tensor, tokens: list[int]) -> tuple[list[float], torch.Tensor]:
        """The multi-draft acceptance rule for one node (override only to study other rules)."""
        return recursive_rejection(p, q, tokens)

    def finish_round(self, tree: DraftTree, accepted: list[int], input_ids: torch.LongTensor) -> None:
        """Keep the accepted path in the draft's cache and record the round; `input_ids` include its tokens."""
        cache = self.assistant_kwargs.get("past_key_values")
        if cache is not None and tree.slots[ROOT] is not None:
            slots = []
            for node in accepted:  # a path's nodes were read in order; a last leaf may not have been
                if tree.slots[node] is None:
                    break
                slots.append(tree.slots[node])
            keep = torch.cat([torch.arange(tree.slots[ROOT] + 1), torch.tensor(slots, dtype=torch.long)])
            compact_cache(cache, keep)
        self.last_tree = tree
        stats = self.stats
        stats.rounds += 1
        stats.target_forwards += 1
        stats.drafted_tokens += tree.num_nodes
        stats.candidate_lengths.append(tree.num_nodes)
        stats.tree_sizes.append(tree.num_nodes)
        stats.accepted_tokens += len(accepted)
        stats.accepted_lengths.append(len(accepted))
        stats.accepted_child_ranks.append([tree.ranks[node] for node in accepted])
        stats.new_tokens = input_ids.shape[1] - self._prompt_length

    # ------------------------------------------------------------------ the decoding entry points
    def decode(self, model, input_ids, logits_processor, stopping_criteria, generation_config,
               draft_model: PreTrainedModel | None = None, streamer: BaseStreamer | None = None, **model_kwargs):
        """Run the tree decoding loop (`loop.tree_decode`) with this generator and `draft_model`."""
        return tree_decode(model, input_ids, self, logits_processor, stopping_criteria, generation_config,
                           draft_model=draft_model, streamer=streamer, **model_kwargs)

    def __call__(self, model, input_ids, logits_processor, stopping_criteria, generation_config, **model_kwargs):
        """The `custom_generate=` route: decode with the generator's own `draft_model` and `streamer`."""
        return self.decode(model, input_ids, logits_processor, stopping_criteria, generation_config,
                           draft_model=self.draft_model, streamer=self.streamer, **model_kwargs)
