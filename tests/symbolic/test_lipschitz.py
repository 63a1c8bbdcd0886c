import torch

from metacompose.symbolic.lipschitz import certify_lipschitz
from metacompose.symbolic.lipschitz_attack import lipschitz_attack
from metacompose.symbolic.network import Network
from metacompose.symbolic.results import Proved, Unknown, Violated
from metacompose.symbolic.self_test import random_pair


def test_bound_dominates_sampled_difference_quotients_and_is_proved():
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        net = random_pair(g, input_dim=2, width=8, residual=seed % 2 == 0, scale=0.1).adapted
        for norm, p in (("l2", 2), ("linf", float("inf"))):
            res, bound = certify_lipschitz(net, norm, 1e6)
            assert isinstance(res, Proved) and res.certificate.used
            x = torch.randn(2000, 2, generator=g, dtype=torch.float64)
            y = x + 1e-3 * torch.randn(2000, 2, generator=g, dtype=torch.float64)
            q = (net(y) - net(x)).norm(p=p, dim=1) / (y - x).norm(p=p, dim=1)
            assert float(q.max()) <= bound
            res2, _ = certify_lipschitz(net, norm, bound * 0.999)
            assert isinstance(res2, Unknown)


def test_deep_chain_of_30_layers_is_proved_quickly_via_logs():
    g = torch.Generator().manual_seed(0)
    layers = [
        (torch.randn(4, 4, generator=g, dtype=torch.float64), torch.zeros(4), "relu")
        for _ in range(30)
    ]
    net = Network.from_layers(layers)
    res, bound = certify_lipschitz(net, "l2", 1e300)
    assert isinstance(res, Proved)
    # reference: product of spectral norms
    ref = 1.0
    for w, _, _ in layers:
        ref *= float(torch.linalg.matrix_norm(w, ord=2))
    assert ref <= bound <= ref * (1 + 1e-6)


def test_attack_refutes_a_linear_map_with_a_replayed_pair():
    w = torch.tensor([[3.0, 4.0]], dtype=torch.float64)  # Lipschitz (l2) exactly 5
    net = Network.from_layers([(w, torch.zeros(1), None)])
    lo, hi = -torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    found = lipschitz_attack(net, "l2", 4.9, lo, hi, generator=torch.Generator().manual_seed(0))
    assert isinstance(found, Violated) and found.observed > 4.9
    x, y = found.counterexample.x, found.counterexample.x2
    assert float((net(y[None]) - net(x[None])).norm() / (y - x).norm()) > 4.9
    assert lipschitz_attack(net, "l2", 5.01, lo, hi) is None
