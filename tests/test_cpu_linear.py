"""FewRowLinear: same results as nn.Linear, shared parameters, and unchanged greedy generation."""

import pytest
import torch
from torch import nn

from hf_specdecpp import SpecDecPPCandidateGenerator
from hf_specdecpp.core.cpu_linear import FewRowLinear, padded_rows, use_fast_cpu_linear
from hf_specdecpp.testing import tiny_pair

from helpers import constant_head


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 6, 7, 9, 13, 16, 17, 40])
def test_matches_nn_linear(rows, bias):
    torch.manual_seed(rows)
    linear = nn.Linear(24, 56, bias=bias)
    fast = FewRowLinear(linear)
    x = torch.randn(1, rows, 24)
    torch.testing.assert_close(fast(x), linear(x), rtol=1e-5, atol=1e-5)
    x2 = torch.randn(rows, 3, 24)  # several leading dimensions
    torch.testing.assert_close(fast(x2), linear(x2), rtol=1e-5, atol=1e-5)
    assert fast(x).is_contiguous()


def test_padded_rows():
    assert [padded_rows(r) for r in range(1, 19)] == [1, 4, 4, 4, 5, 6, 8, 8] + [16] * 8 + [24, 24]
    assert padded_rows(40) == 40 and padded_rows(41) == 48
    assert all(padded_rows(r) >= r for r in range(1, 100))


def test_other_dtypes_fall_back_to_f_linear():
    linear = nn.Linear(8, 8).to(torch.bfloat16)
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    assert torch.equal(FewRowLinear(linear)(x), linear(x))


def test_gradients_flow():
    linear = nn.Linear(6, 5)
    fast = FewRowLinear(linear)
    fast(torch.randn(3, 6)).sum().backward()
    assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0


def test_swap_shares_parameters_and_is_idempotent():
    target, _ = tiny_pair(noise=0.0)
    linears = [m for m in target.modules() if type(m) is nn.Linear]
    state = {k: v.data_ptr() for k, v in target.state_dict().items()}
    tied = target.config.tie_word_embeddings
    assert use_fast_cpu_linear(target) == len(linears) > 0
    assert use_fast_cpu_linear(target) == 0
    assert not any(type(m) is nn.Linear for m in target.modules())
    assert {k: v.data_ptr() for k, v in target.state_dict().items()} == state  # same keys, same storage
    if tied:
        assert target.lm_head.weight is target.get_input_embeddings().weight


def test_greedy_generation_unchanged():
    """Speculative decoding on swapped models still reproduces the unswapped target's greedy output."""
    target, draft = tiny_pair(noise=0.05)
    prompt = torch.tensor([[5, 17, 33, 8, 41, 12]])
    kwargs = dict(max_new_tokens=24, do_sample=False)
    expected = target.generate(prompt, attention_mask=torch.ones_like(prompt), **kwargs)
    use_fast_cpu_linear(target)
    use_fast_cpu_linear(draft)
    plain = target.generate(prompt, attention_mask=torch.ones_like(prompt), **kwargs)
    generator = SpecDecPPCandidateGenerator(head=constant_head(draft.config.hidden_size, 0.9), threshold=0.5)
    out = target.generate(prompt, attention_mask=torch.ones_like(prompt), assistant_model=draft,
                          candidate_generator=generator, **kwargs)
    assert torch.equal(plain, expected)
    assert torch.equal(out, expected)
    assert generator.stats.rounds < 24  # several tokens were verified per target pass
