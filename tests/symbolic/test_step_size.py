import torch

from metacompose.symbolic.network import Network
from metacompose.symbolic.step_size import gauss_newton_smoothness


def net_and_layers(seed):
    g = torch.Generator().manual_seed(seed)
    w1, b1 = (
        torch.randn(6, 1, generator=g, dtype=torch.float64),
        torch.randn(6, generator=g, dtype=torch.float64),
    )
    w2, b2 = (
        torch.randn(1, 6, generator=g, dtype=torch.float64),
        torch.randn(1, generator=g, dtype=torch.float64),
    )
    return Network.from_layers([(w1, b1, "relu"), (w2, b2, None)]), (w1, b1, w2, b2)


def reference(layers, x):
    """lambda_max(2/N J^T J) with J built row by row with torch.autograd (no torch.func)."""
    ps = [p.clone().requires_grad_(True) for p in layers]
    rows = []
    for xi in x:
        out = (torch.relu(xi @ ps[0].T + ps[1]) @ ps[2].T + ps[3]).sum()
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(out, ps)]))
    j = torch.stack(rows)
    return float(torch.linalg.eigvalsh(2.0 / len(x) * j.T @ j).max())


def test_smoothness_matches_reference_and_memo_is_keyed_by_weights():
    x = torch.linspace(-2, 2, 9, dtype=torch.float64).unsqueeze(1)
    net_a, layers_a = net_and_layers(0)
    net_b, layers_b = net_and_layers(1)
    a1 = gauss_newton_smoothness(net_a, x)
    b1 = gauss_newton_smoothness(net_b, x)
    a2 = gauss_newton_smoothness(net_a, x)  # memoised
    assert abs(a1 - reference(layers_a, x)) <= 1e-9 * max(1.0, a1)
    assert abs(b1 - reference(layers_b, x)) <= 1e-9 * max(1.0, b1)
    assert a2 == a1 and a1 != b1
    fewer = gauss_newton_smoothness(net_a, x[:5])  # a different input set is a different key
    assert abs(fewer - reference(layers_a, x[:5])) <= 1e-9 * max(1.0, fewer)
