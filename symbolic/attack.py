"""Projected gradient ascent inside boxes: the search for counterexamples."""

from __future__ import annotations

from collections.abc import Callable

import torch


def pgd_maximize(
    value_fn: Callable[[torch.Tensor], torch.Tensor],
    xlo: torch.Tensor,
    xhi: torch.Tensor,
    *,
    starts_per_box: int = 4,
    steps: int = 30,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, float]:
    """Maximise ``value_fn`` over the union of boxes by signed-gradient ascent from many starts.

    Args:
        value_fn: maps points ``(S, n)`` to values ``(S,)``; must be differentiable in torch.
        xlo: box lower corners, shape ``(B, n)``.
        xhi: box upper corners, shape ``(B, n)``.
        starts_per_box: random starts per box (the box centre is always one more).
        steps: ascent steps; the step shrinks geometrically from a quarter of the box width.
        generator: source of the random starts.

    Returns:
        ``(x, value)``: the best point found, shape ``(n,)``, and its value (recomputed exactly).
    """
    b, n = xlo.shape
    lo = xlo.repeat_interleave(starts_per_box + 1, 0)
    hi = xhi.repeat_interleave(starts_per_box + 1, 0)
    u = torch.rand(lo.shape, generator=generator, dtype=torch.float64)
    u.view(b, starts_per_box + 1, n)[:, 0] = 0.5
    x = lo + u * (hi - lo)
    step = 0.25 * (hi - lo)
    best_x, best_v = x[0].clone(), -float("inf")
    for _ in range(steps + 1):
        x = x.detach().requires_grad_(True)
        v = value_fn(x)
        vd = v.detach()
        i = int(torch.argmax(vd))
        if float(vd[i]) > best_v:
            best_v, best_x = float(vd[i]), x[i].detach().clone()
        (g,) = torch.autograd.grad(v.sum(), x)
        x = torch.minimum(torch.maximum(x.detach() + step * torch.sign(g), lo), hi)
        step = step * 0.8
    with torch.no_grad():
        best_v = float(value_fn(best_x.reshape(1, -1))[0])
    return best_x, best_v
