"""Step-size stability *estimate*: step size times a smoothness estimate (never a proof).

No global smoothness constant exists for ReLU networks, so we estimate the largest eigenvalue of
the Gauss-Newton matrix of the mean squared error at sample inputs, ``lambda_max(2/N J^T J)``,
with ``J`` the Jacobian of the meta network's outputs with respect to its Affine parameters.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict

import torch
from torch.func import jacrev

from metacompose.symbolic.network import Network
from metacompose.symbolic.results import Estimate, Unknown

_CACHE: OrderedDict[str, float] = OrderedDict()
_CACHE_SIZE = 8


def _digest(tensors: tuple[torch.Tensor, ...]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def gauss_newton_smoothness(net: Network, x: torch.Tensor) -> float:
    """``lambda_max`` of the MSE Gauss-Newton matrix at inputs ``x`` of shape ``(N, n)``.

    It depends on the meta network only, which every adaptation of one learner shares, so results
    are memoised by a digest of the weights and inputs (certifying N adaptations computes it once).
    """
    names = [nd.name for nd in net.affine_nodes()]
    params = tuple(t for nd in net.affine_nodes() for t in (nd.op.weight, nd.op.bias))
    key = _digest((*params, x)) + "/" + ",".join(names)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = _gauss_newton_smoothness(net, names, params, x)
    _CACHE[key] = value
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _gauss_newton_smoothness(
    net: Network, names: list[str], params: tuple[torch.Tensor, ...], x: torch.Tensor
) -> float:

    def f(*ps: torch.Tensor) -> torch.Tensor:
        pairs = {k: (ps[2 * i], ps[2 * i + 1]) for i, k in enumerate(names)}
        return net.forward_all(x, pairs)[net.output].reshape(-1)

    jac = jacrev(f, argnums=tuple(range(len(params))))(*params)
    j = torch.cat([t.reshape(t.shape[0], -1) for t in jac], dim=1)
    if not bool(torch.isfinite(j).all()):
        return math.inf
    gram = j @ j.T  # same non-zero spectrum as J^T J, smaller
    return float(2.0 / x.shape[0] * torch.linalg.eigvalsh(gram).max())


def step_size_estimate(net: Network, step_size: float, x: torch.Tensor) -> Estimate | Unknown:
    """``step_size * lambda_max`` as an :class:`Estimate`; ``Unknown`` if it cannot be formed
    (non-finite weights or Jacobian)."""
    if not net.is_finite():
        return Unknown("step_size: the meta network has non-finite weights")
    try:
        lam = gauss_newton_smoothness(net, x)
    except (RuntimeError, ValueError) as e:  # LinAlgError subclasses RuntimeError
        return Unknown(f"step_size: no estimate ({type(e).__name__}: {e})")
    if not math.isfinite(lam):
        return Unknown("step_size: the smoothness estimate is not finite (overflow)")
    value = step_size * lam
    verdict = "below 2 (stable step expected)" if value < 2 else "NOT below 2"
    note = (
        f"estimate only: step {step_size:g} x lambda_max(Gauss-Newton of MSE at {x.shape[0]} "
        f"sampled inputs) {lam:.4g} = {value:.4g}, {verdict}; not a proof"
    )
    return Estimate(value=value, note=note)
