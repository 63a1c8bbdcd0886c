"""Step-size stability *estimate*: step size times a smoothness estimate (never a proof).

No global smoothness constant exists for ReLU networks, so we estimate the largest eigenvalue of
the Gauss-Newton matrix of the mean squared error at sample inputs, ``lambda_max(2/N J^T J)``,
with ``J`` the Jacobian of the meta network's outputs with respect to its Affine parameters.
"""

from __future__ import annotations

import torch
from torch.func import jacrev

from symbolic.network import Network
from symbolic.results import Estimate


def gauss_newton_smoothness(net: Network, x: torch.Tensor) -> float:
    """``lambda_max`` of the MSE Gauss-Newton matrix at inputs ``x`` of shape ``(N, n)``."""
    names = [nd.name for nd in net.affine_nodes()]
    params = tuple(t for nd in net.affine_nodes() for t in (nd.op.weight, nd.op.bias))

    def f(*ps: torch.Tensor) -> torch.Tensor:
        pairs = {k: (ps[2 * i], ps[2 * i + 1]) for i, k in enumerate(names)}
        return net.forward_all(x, pairs)[net.output].reshape(-1)

    jac = jacrev(f, argnums=tuple(range(len(params))))(*params)
    j = torch.cat([t.reshape(t.shape[0], -1) for t in jac], dim=1)
    gram = j @ j.T  # same non-zero spectrum as J^T J, smaller
    return float(2.0 / x.shape[0] * torch.linalg.eigvalsh(gram).max())


def step_size_estimate(net: Network, step_size: float, x: torch.Tensor) -> Estimate:
    lam = gauss_newton_smoothness(net, x)
    value = step_size * lam
    verdict = "below 2 (stable step expected)" if value < 2 else "NOT below 2"
    note = (
        f"estimate only: step {step_size:g} x lambda_max(Gauss-Newton of MSE at {x.shape[0]} "
        f"sampled inputs) {lam:.4g} = {value:.4g}, {verdict}; not a proof"
    )
    return Estimate(value=value, note=note)
