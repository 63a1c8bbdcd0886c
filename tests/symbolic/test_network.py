import pytest
import torch
from torch import nn

from metacompose.symbolic.network import (
    INPUT,
    Activation,
    Add,
    Affine,
    Concat,
    Network,
    NetworkPair,
    Node,
    ReLU,
)


def _rnd(g, *s):
    return torch.randn(*s, generator=g, dtype=torch.float64)


def test_forward_matches_hand_unrolled_loop():
    g = torch.Generator().manual_seed(0)
    w0, b0, w1, b1, w2, b2 = (
        _rnd(g, 5, 2),
        _rnd(g, 5),
        _rnd(g, 5, 5),
        _rnd(g, 5),
        _rnd(g, 3, 10),
        _rnd(g, 3),
    )
    nodes = [
        Node("a", Affine(w0, b0), (INPUT,)),
        Node("ra", ReLU(), ("a",)),
        Node("b", Affine(w1, b1), ("ra",)),
        Node("s", Add(), ("b", "ra")),
        Node("c", Concat(), ("s", "ra")),
        Node("o", Affine(w2, b2), ("c",)),
    ]
    net = Network(input_dim=2, nodes=list(reversed(nodes)), output="o")
    x = _rnd(g, 7, 2)
    for i in range(7):
        h = [
            max(0.0, sum(w0[r, k].item() * x[i, k].item() for k in range(2)) + b0[r].item())
            for r in range(5)
        ]
        s = [sum(w1[r, k].item() * h[k] for k in range(5)) + b1[r].item() + h[r] for r in range(5)]
        c = s + h
        out = [sum(w2[r, k].item() * c[k] for k in range(10)) + b2[r].item() for r in range(3)]
        torch.testing.assert_close(
            net(x[i : i + 1])[0], torch.tensor(out, dtype=torch.float64), atol=1e-12, rtol=1e-12
        )
    assert net.order.index("a") < net.order.index("s") < net.order.index("o")


def test_from_sequential_matches_module():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1))
    net = Network.from_sequential(seq.double(), prefix="body.")
    x = torch.linspace(-5, 5, 11, dtype=torch.float64)[:, None]
    torch.testing.assert_close(net(x), seq(x), atol=1e-12, rtol=0)
    assert [n.name for n in net.affine_nodes()] == ["body.0", "body.1", "body.2"]


def test_unsupported_ops_and_bad_graphs_raise_clear_errors():
    with pytest.raises(TypeError, match="unsupported module Softmax"):
        Network.from_sequential(nn.Sequential(nn.Linear(2, 2), nn.Softmax(-1)))
    with pytest.raises(TypeError, match="unsupported module GELU"):  # tanh approximation
        Network.from_sequential(nn.Sequential(nn.Linear(2, 2), nn.GELU(approximate="tanh")))
    with pytest.raises(TypeError, match="unsupported op"):
        Network(input_dim=1, nodes=[Node("t", "tanh", (INPUT,))])
    with pytest.raises(ValueError, match="cycle"):
        Network(input_dim=1, nodes=[Node("a", Add(), ("b",)), Node("b", Add(), ("a",))])
    with pytest.raises(ValueError, match="width"):
        Network(input_dim=3, nodes=[Node("a", Affine(torch.zeros(2, 2), torch.zeros(2)), (INPUT,))])
    with pytest.raises(ValueError, match="activation"):
        Network.from_layers([(torch.zeros(1, 1), torch.zeros(1), "swish")])
    with pytest.raises(ValueError, match="unknown activation"):
        Activation("swish")


@pytest.mark.parametrize("module", [nn.Tanh(), nn.Sigmoid(), nn.SiLU(), nn.GELU(), nn.Softplus()])
def test_from_sequential_converts_smooth_activations(module):
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(2, 8), module, nn.Linear(8, 1)).double()
    net = Network.from_sequential(seq)
    x = torch.randn(50, 2, dtype=torch.float64) * 3
    torch.testing.assert_close(net(x), seq(x), atol=1e-12, rtol=0)
    assert not net.piecewise_linear


def test_pair_checks_structure_and_groups_modules():
    layers = [(torch.ones(3, 1), torch.zeros(3), "relu"), (torch.ones(1, 3), torch.zeros(1), None)]
    a = Network.from_layers(layers, prefix="body.")
    b = Network.from_layers([(w * 2, bb, act) for w, bb, act in layers], prefix="body.")
    pair = NetworkPair(meta=a, adapted=b)
    x = torch.tensor([[1.0]], dtype=torch.float64)
    torch.testing.assert_close(pair.deviation(x), b(x) - a(x))
    params = pair.module_params()
    assert list(params) == ["body"] and len(params["body"][0]) == 4
    with pytest.raises(ValueError, match="structure"):
        NetworkPair(meta=a, adapted=Network.from_layers(layers[:1]))
