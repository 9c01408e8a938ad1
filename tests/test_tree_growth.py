"""The growth policy (level by level, best estimate first, with or without a head) and how children are drawn.

Growth is driven here by scripted draft distributions (`growth.grow_tree` takes the draft as a callback), so
the selected trees can be checked against hand computation and against best-first growth.
"""

import itertools

import pytest
import torch

from hf_specdecpp import AcceptanceHead
from hf_specdecpp.methods.dyspec.growth import GrowthSettings, draw_children, grow_tree, worth_another_level
from hf_specdecpp.methods.dyspec.tree import HostTree

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
