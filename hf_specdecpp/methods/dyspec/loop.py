"""The decoding loop of DySpec: grow a draft tree level by level, verify it with ONE target pass, keep the path.

Both front doors end here (`custom_generate=`, and `candidate_generator=` through the patch): transformers'
assisted decoding verifies chains only. One sequence per call.

Caches: both models use plain full-attention caches. Between rounds the target's cache holds every token of the
sequence but the last, the draft's a prefix of the sequence; after a round both keep the prefix and the
accepted path only (`core.cache.compact`, in place: work proportional to the path, not the sequence). Host
synchronisations per round: one per tree level (the frontier, whose last read also brings the selected tree to
the host) and one more (the verdict), plus one per accepted token when the call has stopping criteria beyond its
length and EOS limits (`core.processing.first_stop`); node indices and tokens reach the device through staged non-blocking
copies (`core.device.to_device`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ...core.cache import compact
from ...core.chain import DecodeResult, Rows, SpeculationStats
from ...core.device import to_device
from ...core.drafting import ModelSession, additive_mask, causal_allowed, last_logits, tree_allowed
from ...core.processing import criteria_to_offer, first_stop
from .growth import GrowthSettings, grow_tree
from .tree import ROOT, DraftTree, HostTree
from .verify import greedy_outcomes, sampling_outcomes

if TYPE_CHECKING:
    from transformers import StoppingCriteriaList

    from ...core.chain import CallContext
    from ...head import AcceptanceHead
    from .config import DySpecConfig


@dataclass
class Grown:
    """A grown round: the tree, its selected nodes on the host, and the draft's distributions at them."""

    tree: DraftTree
    host: HostTree
    draft_probs: torch.Tensor  # (selected nodes, V); rows of nodes the draft never read are zeros
    prefix_columns: int


class TreeRound:
    """Grows one round's tree with the draft (per call: holds the draft's session and the settings)."""

    def __init__(self, ctx: CallContext, config: DySpecConfig, head: AcceptanceHead | None):
        self.ctx = ctx
        self.config = config
        self.head = head
        self.session = ModelSession(ctx.draft, "draft", 1)
        self.eos = ctx.eos_token_ids.to(self.session.device) if ctx.eos_token_ids is not None else None

    def _scores(self, logits: torch.Tensor, prefixes: list[torch.LongTensor]) -> torch.Tensor:
        """Processed draft scores `(F, V)` after each prefix (the call's processors, target vocabulary)."""
        logits = self.ctx.vocab.draft_scores_for_target(logits.float())
        if not self.ctx.processors_read_ids:
            return self.ctx.logits_processor(logits.new_zeros((logits.shape[0], 1), dtype=torch.long), logits) \
                if len(self.ctx.logits_processor) else logits
        return torch.cat([self.ctx.logits_processor(p[None].to(logits.device), logits[i: i + 1])
                          for i, p in enumerate(prefixes)])

    @torch.no_grad()
    def grow(self, rows: Rows, layout: torch.LongTensor, length: int, base_view: torch.LongTensor) -> Grown:
        """Grow this round's tree under the row's tokens (`layout`'s last `length` columns are real)."""
        session, head = self.session, self.head
        state: dict = {"fed": torch.zeros(1, dtype=torch.long, device=session.device)}  # nodes the draft has read

        def read(tree: DraftTree, nodes: list[int]):
            if nodes == [ROOT]:  # the uncached prefix, ending with the root token
                feed = session.align([length], layout.shape[1])
                attention, positions = session.feed_layout(feed, [length])
                out = session.forward(self.ctx.vocab.ids_for_draft(layout[:, -feed:].to(session.device)),
                                      positions, attention, 1, hidden=head is not None)
                state.update(prefix=session.columns, root_position=positions[0, -1],
                             visible=torch.arange(session.columns, device=session.device) >= session.pads[0])
                tree.slots[ROOT] = session.columns - 1
                return self._scores(last_logits(out, 1)[0], [base_view]), \
                    out.hidden_states[-1][:, -1] if head is not None else None
            index = to_device(nodes, session.device)
            tree.slots[index] = session.columns + torch.arange(len(nodes), device=session.device)
            for k, node in enumerate(nodes):  # keep the host copy of the selection (read by the frontier) current
                tree.snapshot[4][node] = session.columns + k
            state["fed"] = fed = torch.cat([state["fed"], index])
            allowed = tree_allowed(state["visible"], tree.ancestors[index][:, fed], tree.slots[fed],
                                   session.columns + len(nodes))
            out = session.forward(tree.tokens[index][None], (state["root_position"] + tree.depths[index])[None],
                                  additive_mask(allowed, self.ctx.draft.dtype), len(nodes), hidden=head is not None)
            prefixes = self._prefixes(tree, nodes, base_view) if self.ctx.processors_read_ids else []
            return self._scores(last_logits(out, len(nodes))[0], prefixes), \
                out.hidden_states[-1][0, -len(nodes):] if head is not None else None

        left = self.ctx.max_length - rows.prompt.shape[1] - sum(rows.counts) - 1  # accepted + the target's token
        settings = GrowthSettings(self.config.budget, min(self.config.max_depth or left, left), self.ctx.do_sample,
                                  self.config.cost_ratio, self.eos, head)
        tree, probs = grow_tree(layout[0, -1].to(session.device), read, settings)
        host = HostTree(tree)  # the selection growth read with its last level
        draft_probs = torch.stack([probs.get(n, torch.zeros_like(probs[ROOT])) for n in host.nodes])
        return Grown(tree, host, draft_probs, state["prefix"])

    @staticmethod
    def _prefixes(tree: DraftTree, nodes: list[int], base_view: torch.LongTensor) -> list[torch.LongTensor]:
        """The row's tokens followed by each node's path (for logits processors that read token ids), from the
        host copy of the tree the frontier read (`tree.snapshot`: no further sync)."""
        tokens, parents = tree.snapshot[1], tree.snapshot[2]
        paths = []
        for node in nodes:
            path = []
            while node != ROOT:
                path.append(tokens[node])
                node = parents[node]
            paths.append(path[::-1])
        return with_paths(base_view, paths)

    def finish(self, grown: Grown, accepted: list[int]) -> None:
        """Keep the prefix and the accepted path (the nodes the draft has read) in the draft's cache."""
        slots = []
        for i in accepted:
            if grown.host.slots[i] < 0:
                break
            slots.append(grown.host.slots[i])
        compact(self.session.cache, grown.prefix_columns, slots)
        self.session.columns = grown.prefix_columns + len(slots)
        self.session.cached = [self.session.columns - self.session.pads[0]]


def with_paths(base_view: torch.LongTensor, paths: list[list[int]]) -> list[torch.LongTensor]:
    """`base_view` followed by each of `paths` (token ids known on the host), sent to the device in one copy."""
    flat = to_device([token for path in paths for token in path], base_view.device)
    return [torch.cat([base_view, part]) for part in flat.split([len(path) for path in paths])]


def tree_pass(ctx: CallContext, target: ModelSession, host: HostTree, ancestors: torch.Tensor,
              layout: torch.LongTensor, length: int) -> torch.Tensor:
    """One target forward pass over the row's uncached tokens and every selected node; the raw logits `(N, V)`
    after the root (the last token) and after each node. `ancestors` `(N - 1, N - 1)` marks each drafted node's
    drafted ancestors (itself included)."""
    device = target.device
    feed = target.align([length], layout.shape[1])
    _, positions = target.feed_layout(feed, [length])
    before, nodes = target.columns, host.num_drafted
    total = before + feed + nodes
    visible = torch.arange(total, device=device) >= target.pads[0]
    prefix_rows = torch.cat([causal_allowed(feed, before + feed, device),
                             torch.zeros((feed, nodes), dtype=torch.bool, device=device)], dim=1) & visible
    prefix_rows[torch.arange(feed, device=device), before + torch.arange(feed, device=device)] = True  # no empty row
    node_rows = tree_allowed(visible[: before + feed], ancestors.to(device),
                             torch.arange(before + feed, total, device=device), total)
    depths_and_tokens = to_device([host.depths[1:], host.tokens[1:]], device).reshape(2, nodes)
    node_positions = positions[:, -1:] + depths_and_tokens[:1]
    ids = torch.cat([layout[:, -feed:].to(device), depths_and_tokens[1:]], dim=1)
    out = target.forward(ids, torch.cat([positions, node_positions], dim=1),
                         additive_mask(torch.cat([prefix_rows, node_rows]), ctx.target.dtype), nodes + 1)
    return last_logits(out, nodes + 1)[0].float()


def verify_tree(ctx: CallContext, target: ModelSession, grown: Grown, layout: torch.LongTensor, length: int,
                base_view: torch.LongTensor) -> tuple[list[int], int, torch.Tensor, torch.Tensor]:
    """The target's verdict on a grown tree: (accepted node positions, bonus token, processed scores `(N, V)`,
    raw logits `(N, V)` after each selected node)."""
    host = grown.host
    drafted = host.index[1:]
    raw = tree_pass(ctx, target, host, grown.tree.ancestors[drafted][:, drafted], layout, length)
    if ctx.processors_read_ids:
        prefixes = with_paths(base_view, [host.path_tokens(i) for i in range(len(host.nodes))])
        scores = torch.cat([ctx.logits_processor(prefix[None], raw[i: i + 1]) for i, prefix in enumerate(prefixes)])
    elif len(ctx.logits_processor):
        scores = ctx.logits_processor(raw.new_zeros((raw.shape[0], 1), dtype=torch.long), raw)
    else:
        scores = raw
    if ctx.do_sample:
        path, bonus = sampling_outcomes(host, scores.softmax(-1), grown.draft_probs.to(target.device))
    else:
        path, bonus = greedy_outcomes(host, scores)
    return path, bonus, scores, raw


@torch.no_grad()
def tree_decode(ctx: CallContext, config: DySpecConfig, head: AcceptanceHead | None, input_ids: torch.LongTensor,
                attention_mask: torch.Tensor | None, stopping_criteria: StoppingCriteriaList) -> DecodeResult:
    """Decode one sequence with DySpec trees; see the module docstring."""
    rows = Rows.start(input_ids, attention_mask)
    stats = SpeculationStats.for_batch(1)
    target = ModelSession(ctx.target, "target", 1)
    grower = TreeRound(ctx, config, head)
    scores_out: list[torch.Tensor] = []
    logits_out: list[torch.Tensor] = []
    eos = set(ctx.eos_token_ids.reshape(-1).tolist()) if ctx.eos_token_ids is not None else set()
    offered = criteria_to_offer(stopping_criteria, ctx.max_length, ctx.eos_token_ids)
    if ctx.streamer is not None:
        ctx.streamer.put(input_ids.cpu())
    while True:
        length = rows.real[0].shape[0]
        layout, view = rows.layout([0], ctx.pad_token_id), rows.generate_view(0)
        grown = grower.grow(rows, layout, length, view)
        path, bonus, scores, raw = verify_tree(ctx, target, grown, layout, length, view)
        tokens = [grown.host.tokens[i] for i in path] + [bonus]
        budget = ctx.max_length - input_ids.shape[1] - rows.counts[0]
        count = min(len(tokens), budget)
        hit = next((i for i, t in enumerate(tokens[:count]) if t in eos), None)
        if hit is not None:
            count = hit + 1
        visited = [0] + path[: count - 1]  # the nodes whose processed scores chose the kept tokens
        new = to_device(tokens[:count], view.device)
        cut = first_stop(offered, torch.cat([view, new]), view.shape[0],
                         scores_out + list(scores[visited].unbind(0)) if ctx.output_scores else None,
                         input_ids.shape[1])
        if cut is not None:
            count = cut - view.shape[0]
        accepted, visited = path[: count - 1], visited[:count]
        rows.add(0, new[:count])
        prefix = target.columns - grown.host.num_drafted  # the selected nodes follow the prefix in draft order
        compact(target.cache, prefix, [prefix - 1 + i for i in accepted])
        target.columns = prefix + len(accepted)
        target.cached = [length + len(accepted)]
        grower.finish(grown, accepted)
        stats.record_round({0: grown.host.num_drafted}, {0: len(accepted)})
        stats.tree_sizes.append(grown.host.num_drafted)
        stats.accepted_child_ranks.append([grown.host.ranks[i] for i in accepted])
        if ctx.output_scores or ctx.output_logits:
            scores_out.extend(scores[visited].unbind(0))
            logits_out.extend(raw[visited].unbind(0))
        if ctx.streamer is not None:
            ctx.streamer.put(torch.tensor(tokens[:count]))
        if hit is not None or count >= budget or cut is not None:
            break
    if ctx.streamer is not None:
        ctx.streamer.end()
    stats.target_forwards, stats.draft_forwards = target.forwards, grower.session.forwards
    stats.set_new_tokens(rows.counts)
    return DecodeResult(rows.sequences(ctx.pad_token_id), stats,
                        tuple(s[None] for s in scores_out) if ctx.output_scores else None,
                        tuple(s[None] for s in logits_out) if ctx.output_logits else None, target.cache,
                        grower.session.cache)
