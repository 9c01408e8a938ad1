"""DySpec sampling keeps the target's distribution: exactly for the per-node acceptance rule, and end to end.

1. The multi-draft acceptance rule at one node, enumerated exactly over every way the children can be drawn
   (without replacement): the token it outputs has the target's distribution p, to float precision; rules
   with a known flaw do not.
2. End to end through generate(): the empirical distribution of the first two tokens against the exact one,
   with the detector (total-variation bound) of `test_sampling_distribution.py`; the same detector flags a
   naive rule that tries each child against the unchanged target distribution.
"""

import pytest
import torch

import test_sampling_distribution as chain_test  # its exact enumeration, prompt, sampling settings and bound
from hf_specdecpp import DySpecCandidateGenerator
from hf_specdecpp.inference.tree import recursive_rejection
from hf_specdecpp.testing import tiny_pair

from helpers import constant_head, tv_and_bound


def naive_first_match(p, q, tokens):
    """BROKEN: each child is tested against the unchanged p and q, as if it were the only draft."""
    accept = [min(1.0, float(p[x] / q[x])) for x in tokens]
    residual = (p - q).clamp(min=0)
    return accept, residual / residual.sum()


def without_renormalising(p, q, tokens):
    """BROKEN: residuals as for drafts drawn WITH replacement (q never loses the rejected children)."""
    accept = []
    for x in tokens:
        accept.append(min(1.0, float(p[x] / q[x])))
        residual = (p - q).clamp(min=0)
        if residual.sum() > 0:
            p = residual / residual.sum()
    return accept, p


def exact_output(rule, p: torch.Tensor, q: torch.Tensor, num_children: int) -> torch.Tensor:
    """The exact distribution of the token a node outputs when its children are drawn without replacement
    from q (stopping early when q's support runs out) and verified with `rule`."""
    out = torch.zeros_like(p)

    def visit(tokens: list[int], probability: float, remaining: torch.Tensor) -> None:
        nonlocal out
        if len(tokens) == num_children or remaining.sum() <= 0:
            accept, residual = rule(p, q, tokens)
            reach = probability
            for token, a in zip(tokens, accept):
                out[token] += reach * a
                reach *= 1 - a
            out += reach * residual
            return
        draw = remaining / remaining.sum()
        for token in draw.nonzero().flatten().tolist():
            rest = remaining.clone()
            rest[token] = 0
            visit(tokens + [token], probability * float(draw[token]), rest)

    visit([], 1.0, q.clone())
    return out


def distributions(seed: int, vocab: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """A target p and a draft q with different supports (each has zeros where the other has mass)."""
    generator = torch.Generator().manual_seed(seed)
    p = torch.rand(vocab, generator=generator, dtype=torch.float64) ** 2
    q = torch.rand(vocab, generator=generator, dtype=torch.float64) ** 2
    p[0], q[1] = 0.0, 0.0
    return p / p.sum(), q / q.sum()


@pytest.mark.parametrize("num_children", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recursive_rejection_outputs_exactly_p(seed, num_children):
    p, q = distributions(seed)
    torch.testing.assert_close(exact_output(recursive_rejection, p, q, num_children), p, atol=1e-9, rtol=0)


def test_recursive_rejection_with_identical_distributions_accepts_the_first_child():
    p, _ = distributions(3)
    accept, _ = recursive_rejection(p, p.clone(), [2, 4])
    assert accept[0] == pytest.approx(1.0)
    torch.testing.assert_close(exact_output(recursive_rejection, p, p.clone(), 3), p, atol=1e-9, rtol=0)


@pytest.mark.parametrize("rule", [naive_first_match, without_renormalising])
def test_flawed_rules_are_not_exact(rule):
    worst = 0.0
    for seed in range(3):
        p, q = distributions(seed)
        worst = max(worst, 0.5 * float((exact_output(rule, p, q, 3) - p).abs().sum()))
    assert worst > 0.02, f"{rule.__name__} should change the output distribution (TV {worst:.4f})"
    # one child only: every rule is plain speculative sampling and exact
    p, q = distributions(0)
    torch.testing.assert_close(exact_output(rule, p, q, 1), p, atol=1e-9, rtol=0)


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def pair():
    target, draft = tiny_pair("llama", vocab_size=chain_test.VOCAB, noise=0.3, seed=3)
    with torch.no_grad():  # flatter logits, as in test_sampling_distribution.py: many outcomes have visible mass
        target.get_output_embeddings().weight.mul_(0.25)
        draft.get_output_embeddings().weight.mul_(0.25)
    return target, draft


def first_two_tv(target, generator, num_samples: int, max_new_tokens: int, route: str = "candidate_generator"):
    """Sample the first two tokens `num_samples` times; return TV to the exact law, the bound, and the stats."""
    exact = chain_test.exact_first_two(target)
    kwargs = dict(chain_test.GENERATE_KWARGS, max_new_tokens=max_new_tokens)
    torch.manual_seed(1234)
    counts: dict[tuple[int, int], int] = {}
    rounds = []
    start = chain_test.PROMPT.shape[1]
    for _ in range(num_samples):
        out = target.generate(chain_test.PROMPT, **{route: generator}, **kwargs)
        key = tuple(out[0, start: start + 2].tolist())
        counts[key] = counts.get(key, 0) + 1
        rounds.append((generator.stats.tree_sizes[0], generator.stats.accepted_child_ranks[0]))
    tv, bound = tv_and_bound(counts, exact, num_samples, chain_test.DELTA)
    return tv, bound, rounds


class NaiveFirstMatch(DySpecCandidateGenerator):
    """A deliberately broken tree generator: tries each child against the unchanged target distribution."""

    def child_acceptance(self, p, q, tokens):
        return naive_first_match(p, q, tokens)


@pytest.mark.slow
def test_sampling_preserves_target_distribution(pair):
    """Head-guided trees of depth 2 with several children per node: both tokens can come from the tree."""
    target, draft = pair
    generator = DySpecCandidateGenerator(budget=4, head=constant_head(32, 0.7), draft_model=draft)
    tv, bound, rounds = first_two_tv(target, generator, num_samples=1000, max_new_tokens=3)
    assert {size for size, _ in rounds} == {4}
    assert any(len(ranks) == 2 and ranks[1] > 0 for _, ranks in rounds)  # a later child at depth 2 accepted
    assert tv <= bound, f"TV {tv:.4f} exceeds the bound {bound:.4f}"


@pytest.mark.slow
@pytest.mark.parametrize("generator_cls", [DySpecCandidateGenerator, NaiveFirstMatch])
def test_detector_passes_recursive_rejection_and_flags_naive_rule(pair, generator_cls):
    """Depth-1 trees whose root holds all 4 tokens that top-k leaves; the naive rule over-accepts children."""
    target, draft = pair
    generator = generator_cls(budget=4, draft_model=draft)
    tv, bound, rounds = first_two_tv(target, generator, num_samples=1500, max_new_tokens=2, route="custom_generate")
    assert {size for size, _ in rounds} == {4}
    assert any(ranks and ranks[0] > 0 for _, ranks in rounds)
    if generator_cls is NaiveFirstMatch:
        assert tv > bound, f"TV {tv:.4f} should exceed the bound {bound:.4f} for the naive rule"
    else:
        assert tv <= bound, f"TV {tv:.4f} exceeds the bound {bound:.4f}"
