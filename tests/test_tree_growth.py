"""The growth policy (best-first under a budget, with or without the head) and the order children are drawn in."""

import itertools

import pytest
import torch

from hf_specdecpp.inference.tree import DraftTree
from hf_specdecpp.inference.tree.growth import child_candidates, grow_tree

Q = torch.tensor([0.7, 0.2, 0.1, 0.0])  # the draft distribution at every node in these tests (token 3 impossible)


def fake_expand(tree: DraftTree, accept: float | None = None):
    """An `expand` that gives every node the distribution Q (children in probability order) and a head value."""

    def expand(node: int) -> None:
        tree.probs[node] = Q
        tree.child_tokens[node], tree.child_probs[node] = child_candidates(Q, max_children=8, do_sample=False)
        if node != 0:
            tree.accept[node] = accept

    return expand


def all_path_values(depth: int) -> list[float]:
    """Draft path products of every possible node up to `depth` under Q."""
    probs = [p for p in Q.tolist() if p > 0]
    values = []
    for d in range(1, depth + 1):
        for path in itertools.product(probs, repeat=d):
            values.append(float(torch.tensor(path).prod()))
    return values


@pytest.mark.parametrize("budget", [1, 2, 5, 9])
def test_best_first_keeps_the_highest_path_products(budget):
    tree = DraftTree(root_token=0)
    grow_tree(tree, budget, fake_expand(tree), expandable=lambda node: tree.depths[node] < 6)
    assert tree.num_nodes == budget
    best = sorted(all_path_values(6), reverse=True)[:budget]
    assert sorted(tree.values[1:], reverse=True) == pytest.approx(best)
    for node in range(1, tree.num_nodes + 1):  # each value is the product of draft probabilities along the path
        expected = float(torch.tensor([Q[t] for t in tree.path_tokens(node)]).prod())
        assert tree.values[node] == pytest.approx(expected)


def test_budget_five_builds_chain_plus_sibling():
    tree = DraftTree(root_token=0)
    grow_tree(tree, 5, fake_expand(tree), expandable=lambda node: True)
    assert tree.parents == [-1, 0, 1, 2, 3, 0]  # 0.7, 0.49, 0.343, 0.2401, then the root's second child 0.2
    assert tree.ranks == [0, 0, 0, 0, 0, 1]


def test_depth_limit_and_zero_probability_tokens():
    tree = DraftTree(root_token=0)
    grow_tree(tree, 20, fake_expand(tree), expandable=lambda node: tree.depths[node] < 1)
    assert tree.tokens[1:] == [0, 1, 2]  # only the root expands; token 3 (probability 0) is never drafted
    assert max(tree.depths) == 1


def test_last_node_is_not_expanded():
    tree = DraftTree(root_token=0)
    expanded = []
    expand = fake_expand(tree)
    grow_tree(tree, 3, lambda node: (expanded.append(node), expand(node)), expandable=lambda node: True)
    assert tree.num_nodes == 3 and expanded == [0, 1, 2]


def test_head_values_first_child_and_shared_remainder():
    """With a head: first child value(parent) * a; later children share (1 - a) by draft probability."""
    a = 0.5
    tree = DraftTree(root_token=0)
    grow_tree(tree, 4, fake_expand(tree, accept=a), expandable=lambda node: tree.depths[node] < 1 or node == 1)
    first, second = tree.children[0][:2]
    assert tree.values[first] == pytest.approx(a)  # selected with 0.7, then re-valued by the head
    assert tree.values[second] == pytest.approx((1 - a) * 0.2 / (1 - 0.7))
    # node 1's first child: value(1) * q = 0.5 * 0.7 = 0.35 beats the root's second child (0.333...)
    assert tree.parents[2] == 1 and tree.values[2] == pytest.approx(0.35)


def test_head_changes_the_tree_shape():
    """A pessimistic head makes the tree wider, an optimistic one deeper, for the same draft distributions."""
    shapes = {}
    for a in (0.05, 0.99):
        tree = DraftTree(root_token=0)
        grow_tree(tree, 6, fake_expand(tree, accept=a), expandable=lambda node: True)
        shapes[a] = max(tree.depths)
    assert shapes[0.05] < shapes[0.99]


def test_sampled_children_are_drawn_without_replacement():
    """Gumbel-top-k gives the first two children the law of sequential sampling without replacement."""
    q = torch.tensor([0.5, 0.3, 0.2])
    torch.manual_seed(0)
    n = 6000
    counts: dict[tuple[int, int], int] = {}
    for _ in range(n):
        tokens, probs = child_candidates(q, max_children=2, do_sample=True)
        assert len(set(tokens)) == 2 and probs == pytest.approx([float(q[t]) for t in tokens])
        counts[tuple(tokens)] = counts.get(tuple(tokens), 0) + 1
    for (i, j), count in counts.items():
        exact = float(q[i] * q[j] / (1 - q[i]))
        assert abs(count / n - exact) < 0.025, ((i, j), count / n, exact)


def test_cost_ratio_chooses_the_tree_size_per_round():
    """Growth stops once another node would lower the expected tokens per unit of time."""
    sizes = []
    for cost_ratio in (1e-4, 0.05, 0.3, 2.0):
        tree = DraftTree(root_token=0)
        grow_tree(tree, 12, fake_expand(tree), expandable=lambda node: True, cost_ratio=cost_ratio)
        sizes.append(tree.num_nodes)
        n, total = tree.num_nodes, sum(tree.values[1:])
        if 0 < n < 12:  # the tree it stopped at beats one node fewer
            without_last = (1 + total - tree.values[-1]) / (1 + (n - 1) * cost_ratio)
            assert (1 + total) / (1 + n * cost_ratio) > without_last
    assert sizes[0] == 12 and sizes[-1] == 0  # a draft twice as slow as the target is never worth a node
    assert sizes == sorted(sizes, reverse=True) and 0 < sizes[2] < sizes[1] < 12, sizes
