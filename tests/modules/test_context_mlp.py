"""ContextMLP: f(x, c) equals an MLP of [x, scale * c] (float64 reference), the context starts at
zero outside meta-training, and the module rebuilds from its spec."""

import pytest
import torch

from metacompose.modules import ContextMLP, build_module


def test_forward_is_the_mlp_of_input_and_scaled_context():
    torch.manual_seed(1)
    m = ContextMLP(in_features=2, context=3, hidden=[5], out_features=1, activation="tanh",
                   activate_output=False, context_scale=2.5).double()  # fmt: skip
    c = torch.tensor([0.3, -1.2, 0.7], dtype=torch.float64)
    x = torch.randn(7, 2, dtype=torch.float64)
    w1, b1 = m.mlp.layers[0].weight, m.mlp.layers[0].bias
    w2, b2 = m.mlp.layers[2].weight, m.mlp.layers[2].bias
    h = torch.tanh(x @ w1[:, :2].T + (2.5 * c) @ w1[:, 2:].T + b1)
    expected = h @ w2.T + b2
    params = {**dict(m.named_parameters()), "context": c}
    torch.testing.assert_close(m.apply_params(params, x), expected, atol=1e-12, rtol=0)


def test_context_starts_at_zero_and_is_not_meta_learned():
    m = ContextMLP(in_features=1, context=2, hidden=[4], out_features=1)
    assert torch.equal(m.context, torch.zeros(2))
    assert not m.context.requires_grad
    assert all(p.requires_grad for k, p in m.named_parameters() if k != "context")
    m(torch.randn(3, 1)).sum().backward()
    assert m.context.grad is None and m.mlp.layers[0].weight.grad is not None


def test_rebuilds_from_its_spec():
    m = ContextMLP(in_features=1, context=2, hidden=[4], out_features=1, context_scale=3.0)
    again = build_module("ContextMLP", m.spec())
    assert again.spec() == m.spec() and again.context_scale == 3.0
    assert [k for k, _ in again.named_parameters()] == [k for k, _ in m.named_parameters()]


def test_context_must_have_a_dimension():
    with pytest.raises(ValueError, match="context must be >= 1"):
        ContextMLP(in_features=1, context=0, out_features=1)
