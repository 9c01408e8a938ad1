"""The growth policy (level by level, best estimate first, with or without a head) and how children are drawn.

Growth is driven here by scripted draft distributions (`growth.grow_tree` takes the draft as a callback), so
the selected trees can be checked against hand computation and against best-first growth.
"""

import itertools
import math

import pytest
import torch

from hf_specdecpp import AcceptanceHead
from hf_specdecpp.methods.dyspec import growth
from hf_specdecpp.methods.dyspec.growth import GrowthSettings, draw_children, grow_tree, worth_another_level
from hf_specdecpp.methods.dyspec.tree import DraftTree, HostTree

Q = torch.tensor([0.7, 0.2, 0.1, 0.0])  # the draft distribution at every node in these tests (token 3 impossible)


def reader(counter: list | None = None, hidden_size: int = 4):
    """A `Reader` giving every node the distribution Q (and a fixed hidden state); counts the draft passes."""
    def read(tree, nodes):
        if counter is not None:
            counter.append(list(nodes))
        return Q.log().expand(len(nodes), -1), torch.zeros(len(nodes), hidden_size)
    return read


def grown(budget: int, max_depth: int = 64, head=None, cost_ratio=None, counter=None) -> HostTree:
    settings = GrowthSettings(budget, max_depth, do_sample=False, cost_ratio=cost_ratio, head=head)
    tree, _ = grow_tree(torch.tensor(0), reader(counter), settings)
    host = HostTree(tree, tree.best(budget))
    host.values = tree.value[host.index].tolist()
    return host


def all_path_values(depth: int) -> list[float]:
    """Draft path products of every possible node up to `depth` under Q."""
    probs = [p for p in Q.tolist() if p > 0]
    return [float(torch.tensor(path).prod()) for d in range(1, depth + 1) for path in itertools.product(probs, repeat=d)]


@pytest.mark.parametrize("budget", [1, 2, 5, 9])
def test_keeps_the_highest_path_products_like_best_first_growth(budget):
    host = grown(budget, max_depth=6)
    assert host.num_drafted == budget
    best = sorted(all_path_values(6), reverse=True)[:budget]
    assert sorted(host.values[1:], reverse=True) == pytest.approx(best, rel=1e-5)
    for i in range(1, len(host.nodes)):  # each value is the product of draft probabilities along the path
        expected = float(torch.tensor([Q[t] for t in host.path_tokens(i)]).prod())
        assert host.values[i] == pytest.approx(expected, rel=1e-5)


def test_budget_five_builds_chain_plus_sibling():
    host = grown(5)
    parents = sorted((host.depths[i], host.tokens[i], host.parents[i] and host.depths[host.parents[i]])
                     for i in range(1, 6))
    # 0.7, 0.49, 0.343, 0.2401 along token 0, then the root's second child (0.2)
    assert sorted(host.depths[1:]) == [1, 1, 2, 3, 4]
    assert sorted(host.tokens[i] for i in host.children[0]) == [0, 1]
    assert [host.ranks[i] for i in host.children[0]] == [0, 1] and parents


def test_depth_limit_and_zero_probability_tokens():
    host = grown(20, max_depth=1)
    assert sorted(host.tokens[1:]) == [0, 1, 2]  # only the root expands; token 3 (probability 0) is never drafted
    assert max(host.depths) == 1


def test_one_draft_pass_per_level_and_the_weakest_node_is_not_read():
    passes: list[list[int]] = []
    host = grown(3, counter=passes)
    # the chain 0.7 -> 0.49 -> 0.343 is the best 3 nodes. Level 1 reads the root; level 2 reads every selected
    # node whose children could still enter (0.7 and 0.2, not the weakest, 0.1); level 3 reads 0.49 only. The last
    # node (0.343) is the weakest of the final tree: it is not read.
    assert max(host.depths) == 3
    assert [len(p) for p in passes] == [1, 2, 1]


def test_head_values_first_child_and_shared_remainder():
    """With a producing-state head: first child value(parent) * a; later children share (1 - a) by draft probability."""
    head = AcceptanceHead(4, 0, input_state="producing_state")
    with torch.no_grad():  # a = sigmoid(0) = 0.5 for every first child
        head.classifier.weight.zero_()
        head.classifier.bias.zero_()
    host = grown(4, max_depth=2, head=head)
    first, second = host.children[0][:2]
    assert host.values[first] == pytest.approx(0.5, rel=1e-5)
    assert host.values[second] == pytest.approx((1 - 0.5) * 0.2 / (1 - 0.7), rel=1e-5)
    # the first child's own first child: 0.5 * 0.5 = 0.25 loses to the root's second child (0.333...)
    assert len(host.children[0]) >= 2


def test_head_changes_the_tree_shape():
    """A pessimistic head makes the tree wider, an optimistic one deeper, for the same draft distributions."""
    depths = {}
    for logit in (-3.0, 5.0):
        head = AcceptanceHead(4, 0, input_state="producing_state")
        with torch.no_grad():
            head.classifier.weight.zero_()
            head.classifier.bias.fill_(logit)
        depths[logit] = max(grown(6, head=head).depths)
    assert depths[-3.0] < depths[5.0]


def test_sampled_children_are_drawn_without_replacement():
    """Gumbel-top-k gives the first two children the law of sequential sampling without replacement."""
    q = torch.tensor([[0.5, 0.3, 0.2]])
    torch.manual_seed(0)
    n = 6000
    counts: dict[tuple[int, int], int] = {}
    for _ in range(n):
        tokens, probs = draw_children(q, 2, do_sample=True)
        key = tuple(tokens[0].tolist())
        assert len(set(key)) == 2 and probs[0].tolist() == pytest.approx([float(q[0, t]) for t in key])
        counts[key] = counts.get(key, 0) + 1
    for (i, j), count in counts.items():
        exact = float(q[0, i] * q[0, j] / (1 - q[0, i]))
        assert abs(count / n - exact) < 0.025, ((i, j), count / n, exact)


def test_cost_ratio_stops_growing_when_a_level_cannot_pay():
    """Growth stops before a level whose best possible gain cannot pay for one more draft pass."""
    depths = []
    for cost_ratio in (1e-4, 0.05, 0.3, 2.0):
        passes: list[list[int]] = []
        host = grown(12, cost_ratio=cost_ratio, counter=passes)
        depths.append(len(passes))
        assert host.num_drafted >= 1
    assert depths == sorted(depths, reverse=True) and depths[0] > depths[-1] == 1, depths
    # the stopping rule itself, by hand: E = 1 + 0.7, a frontier worth 0.49, one level so far
    assert worth_another_level(0.7, 0.49, 1, 0.05) and not worth_another_level(0.7, 0.49, 1, 2.0)


# ------------------------------------------------------------------- issue 27: work per level, children per node
def test_ancestor_rows_are_appended_not_rebuilt_every_level():
    """A level writes its new nodes' rows (the parent's row plus the node) into spare room: the rows already there
    are neither recomputed nor moved, except when the buffer doubles (a logarithmic number of times). The old tree
    built a new (N, N) matrix at every level: one storage per level."""
    tree = DraftTree(torch.tensor(0))
    views, parent = [], 0
    for _ in range(40):  # a deep, narrow tree: 40 levels of two nodes
        values = torch.full((1, 2), 0.5)
        parent = int(tree.add_children(torch.tensor([parent]), torch.tensor([[1, 2]]), values, values, values)[0, 0])
        views.append(tree.ancestors)  # kept alive: a rebuilt matrix could not reuse an earlier one's memory
    storages = {view.untyped_storage().data_ptr() for view in views}
    assert len(storages) <= math.ceil(math.log2(tree.num_nodes)) + 1, len(storages)
    expected = torch.eye(tree.num_nodes, dtype=torch.bool)
    for node in range(1, tree.num_nodes):  # nodes come after their parents
        expected[node] |= expected[int(tree.parents[node])]
    assert torch.equal(tree.ancestors, expected)
    for view in views:  # rows written at a level are never rewritten later
        assert torch.equal(view, expected[: view.shape[0], : view.shape[0]])


SPREAD = torch.linspace(3.0, 0.0, 32).softmax(-1)  # 32 tokens, strictly decreasing probabilities


def test_a_node_draws_only_the_children_the_budget_can_still_use():
    """The node at place p of the selection draws `budget - p` children, not `budget`: its j-th child can only be
    selected if p + j < budget. Budget 8, depth 2: the root draws 8; the 7 children that can still have selected
    children (the 8th is the weakest selected node) draw 7, 6, ..., 1 (28 nodes instead of 7 x 8 = 56)."""
    widths = []

    def draw(probs, count, do_sample):
        widths.append(count)
        return draw_children(probs, count, do_sample)

    def read(tree, nodes):
        return SPREAD.log().expand(len(nodes), -1), None

    budget = 8
    tree, _ = grow_tree(torch.tensor(0), read, GrowthSettings(budget, 2, do_sample=False), draw=draw)
    assert widths == [8, 7]
    children = torch.bincount(tree.parents[1:], minlength=tree.num_nodes).tolist()
    first = list(range(1, budget + 1))  # the root's children, by falling value (= draw order)
    assert [children[node] for node in first] == [budget - place for place in range(1, budget + 1)]
    assert tree.num_nodes == 1 + budget + 28
    host = HostTree(tree, tree.best(budget))  # still the best 8 path products
    products = sorted((float(SPREAD[a] * (SPREAD[b] if b is not None else 1.0)) for a in range(32)
                       for b in [None, *range(32)]), reverse=True)[:budget]
    assert sorted(tree.value[host.index[1:]].tolist(), reverse=True) == pytest.approx(products, rel=1e-5)


def path_reader(vocab: int, seed: int):
    """A `Reader` whose draft distribution depends on the node's path (sharp enough for deep, uneven trees)."""
    def read(tree, nodes):
        rows = []
        for node in nodes:
            path = tree.tokens[tree.ancestors[node]].tolist()
            g = torch.Generator().manual_seed(seed * 1_000_003 + hash(tuple(path)) % 1_000_003)
            rows.append(torch.randn(vocab, generator=g, dtype=torch.float64) * 2.5)
        return torch.stack(rows).log_softmax(-1), None
    return read


@pytest.mark.parametrize("do_sample", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bounded_children_grow_the_same_tree_as_drawing_budget_children(monkeypatch, do_sample, seed):
    """Exactness of the bound: with the same random draws, the selected tree (and every level's frontier) is the
    one that drawing `budget` children at every node gives."""
    settings = GrowthSettings(10, 6, do_sample=do_sample)
    frontier = growth.frontier
    grown_trees = []
    for unbounded in (False, True):
        if unbounded:
            monkeypatch.setattr(growth, "frontier", lambda tree, s, also=None: (lambda out: out._replace(
                counts=[s.budget] * len(out.nodes)))(frontier(tree, s, also)))
        torch.manual_seed(seed)
        tree, probs = grow_tree(torch.tensor(0), path_reader(24, seed), settings)
        host = HostTree(tree, tree.best(settings.budget))
        paths = sorted((tuple(host.path_tokens(i)), float(tree.value[node])) for i, node in enumerate(host.nodes))
        grown_trees.append((paths, sorted(tuple(tree.tokens[tree.ancestors[n]].tolist()) for n in probs),
                            tree.num_nodes))
    (bounded, read_bounded, size), (unbounded, read_unbounded, unbounded_size) = grown_trees
    assert bounded == unbounded and read_bounded == read_unbounded
    assert size < unbounded_size
