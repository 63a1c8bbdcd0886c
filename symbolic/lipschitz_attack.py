"""Search for input pairs whose difference quotient exceeds a Lipschitz claim."""

from __future__ import annotations

import torch
from torch.func import jacrev, vmap

from metacompose.symbolic.exact_eval import quotient_exceeds
from metacompose.symbolic.network import Network
from metacompose.symbolic.results import Counterexample, Violated
from metacompose.symbolic.spec import exact_value


def _quotient(net: Network, x: torch.Tensor, y: torch.Tensor, norm: str) -> float:
    p = 2 if norm == "l2" else float("inf")
    with torch.no_grad():
        fx, fy = net(x.reshape(1, -1))[0], net(y.reshape(1, -1))[0]
    den = float(torch.linalg.vector_norm(y - x, ord=p))
    return float(torch.linalg.vector_norm(fy - fx, ord=p)) / den if den > 0 else 0.0


def lipschitz_attack(
    net: Network,
    norm: str,
    limit: float,
    xlo: torch.Tensor,
    xhi: torch.Tensor,
    *,
    n_starts: int = 64,
    generator: torch.Generator | None = None,
) -> Violated | None:
    """Try to refute ``Lip_norm(net) <= limit`` with a concrete pair.

    At random points of the boxes ``(B, n)`` the local Jacobian's steepest direction is followed
    by small steps; a pair counts only if its difference quotient exceeds the exact ``limit`` in
    exact (rigorously enclosed) arithmetic: a float quotient overshoots the true one by ~1e-10
    relative for tiny steps. Non-finite weights or Jacobians give ``None`` (nothing found).
    """
    if not net.is_finite():
        return None
    exact_limit = exact_value(limit)
    idx = torch.randint(0, xlo.shape[0], (n_starts,), generator=generator)
    u = torch.rand((n_starts, xlo.shape[1]), generator=generator, dtype=torch.float64)
    xs = xlo[idx] + u * (xhi[idx] - xlo[idx])
    jac = vmap(jacrev(lambda z: net(z.reshape(1, -1))[0]))(xs)  # (S, m, n)
    keep = torch.isfinite(jac).flatten(1).all(1)
    if not bool(keep.any()):
        return None
    xs, jac, idx = xs[keep], jac[keep], idx[keep]
    try:
        if norm == "l2":
            svals = torch.linalg.svdvals(jac)[:, 0]
            order = torch.argsort(svals, descending=True)[:8].tolist()
            directions = {s: torch.linalg.svd(jac[s]).Vh[0] for s in order}
        else:
            order = torch.argsort(jac.abs().sum(2).amax(1), descending=True)[:8].tolist()
            directions = {s: torch.sign(jac[s][int(jac[s].abs().sum(1).argmax())]) for s in order}
    except RuntimeError:  # torch.linalg.LinAlgError: the Jacobian overflows inside the SVD
        return None
    best = None
    for s in order:
        x, direction = xs[s], directions[s]
        scale = float((xhi[idx[s]] - xlo[idx[s]]).max()) or 1.0
        for h in (1e-3, 1e-5, 1e-7):
            y = x + h * scale * direction
            q = _quotient(net, x, y, norm)
            if not (q > limit and (best is None or q > best.observed)):
                continue
            if quotient_exceeds(net, x, y, norm, exact_limit):
                note = f"difference quotient {q:.6g} in {norm} (exceeds the limit exactly)"
                with torch.no_grad():
                    fy = net(y.reshape(1, -1))[0] - net(x.reshape(1, -1))[0]
                best = Violated(Counterexample(x=x, x2=y, y=fy, note=note), q)
    return best
