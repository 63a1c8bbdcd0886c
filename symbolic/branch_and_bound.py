"""Branch and bound over the input domain: split boxes, re-bound the objective, prune, attack.

Used two ways: to *decide* ``max_x value(x) <= threshold`` (proved when every leaf box is pruned,
violated when an attack finds a point above the threshold), and to *tighten* the certified upper
bound on ``max_x value(x)`` until it is within ``rel_gap`` of the best value found.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from metacompose.symbolic.attack import pgd_maximize
from metacompose.symbolic.diff_propagation import output_bounds
from metacompose.symbolic.network import NetworkPair
from metacompose.symbolic.objectives import Objective


@dataclass(frozen=True)
class BranchAndBoundResult:
    """Outcome of a search.

    Args:
        status: ``"proved"`` (all leaves below the threshold), ``"violated"`` (``best_value`` above
            it), ``"tight"`` (tighten mode: gap reached) or ``"unknown"`` (budget spent).
        upper: certified upper bound on the max of the objective over the domain (``inf`` if not
            established, e.g. after an early violation).
        best_value: the largest objective value seen at a concrete point (a lower bound on the max).
        best_x: that point, shape ``(n,)``.
        n_boxes: boxes bounded in total.
        seconds: wall time.
    """

    status: str
    upper: float
    best_value: float
    best_x: torch.Tensor
    n_boxes: int
    seconds: float


def branch_and_bound(
    pair: NetworkPair,
    objective: Objective,
    xlo: torch.Tensor,
    xhi: torch.Tensor,
    *,
    threshold: float | None = None,
    rel_gap: float = 0.01,
    time_budget_s: float = 5.0,
    batch: int = 64,
    attack_every: int = 4,
    generator: torch.Generator | None = None,
    min_width: float = 0.0,
) -> BranchAndBoundResult:
    """Search boxes ``[xlo, xhi]`` (each ``(B, n)``), see the module docstring.

    Args:
        threshold: decide ``max value <= threshold``; ``None`` tightens the bound instead.
        rel_gap: tighten mode stops when ``upper - best <= rel_gap * |best|``.
        time_budget_s: wall-clock budget; when spent the status is ``"unknown"``.
        batch: boxes split per iteration (each into two halves along its widest side).
        attack_every: run projected gradient ascent from the worst boxes every this many rounds.
        generator: randomness of the attack.
        min_width: stop with ``"unknown"`` once the boxes to split are all narrower than this
            (relative to the domain's extent): the bound cannot get meaningfully tighter.
    """
    t0 = time.perf_counter()
    scale = (xhi - xlo).amax(0).clamp(min=1e-300)
    lo, hi = xlo.to(torch.float64), xhi.to(torch.float64)
    ub = objective.upper(output_bounds(pair, lo, hi))
    n_boxes = lo.shape[0]
    best_x, best_v = pgd_maximize(
        lambda x: objective.value(pair, x), lo, hi, starts_per_box=2, steps=10, generator=generator
    )
    done_ub = -float("inf")
    rounds = 0

    def result(status: str, upper: float) -> BranchAndBoundResult:
        return BranchAndBoundResult(
            status, upper, best_v, best_x, n_boxes, time.perf_counter() - t0
        )

    while True:
        if not bool(torch.isfinite(ub).all()):
            return result("unknown", float("inf"))
        if threshold is not None:
            if best_v > threshold:
                return result("violated", float("inf"))
            keep = ub > threshold
        else:
            keep = ub > best_v
        if bool((~keep).any()):
            done_ub = max(done_ub, float(ub[~keep].max()))
        lo, hi, ub = lo[keep], hi[keep], ub[keep]
        upper = max(done_ub, best_v, float(ub.max()) if ub.numel() else -float("inf"))
        if ub.numel() == 0:
            return result("proved" if threshold is not None else "tight", upper)
        if threshold is None and upper - best_v <= rel_gap * abs(best_v):
            return result("tight", upper)
        if time.perf_counter() - t0 > time_budget_s:
            return result("unknown", upper)
        order = torch.argsort(ub, descending=True)
        top, rest = order[:batch], order[batch:]
        if min_width > 0 and bool((((hi[top] - lo[top]) / scale).amax(1) < min_width).all()):
            return result("unknown", upper)
        clo, chi = _split(lo[top], hi[top], scale)
        cub = objective.upper(output_bounds(pair, clo, chi))
        n_boxes += clo.shape[0]
        rounds += 1
        attack = rounds % attack_every == 0
        best_v, best_x = _best_point(
            pair, objective, clo, chi, cub, best_v, best_x, attack, generator
        )
        lo = torch.cat([lo[rest], clo])
        hi = torch.cat([hi[rest], chi])
        ub = torch.cat([ub[rest], cub])


def _best_point(pair, objective, clo, chi, cub, best_v, best_x, attack: bool, generator):
    """The best of ``(best_v, best_x)``, the new boxes' centres and, with ``attack``, projected
    gradient ascent from the (at most 8) boxes of largest upper bound ``cub``."""
    with torch.no_grad():
        centres = 0.5 * (clo + chi)
        vals = objective.value(pair, centres)
    i = int(torch.argmax(vals))
    if float(vals[i]) > best_v:
        best_v, best_x = float(vals[i]), centres[i].clone()
    if attack:
        worst = torch.argsort(cub, descending=True)[: min(8, clo.shape[0])]
        x, v = pgd_maximize(
            lambda x: objective.value(pair, x), clo[worst], chi[worst], starts_per_box=2,
            steps=15, generator=generator,
        )  # fmt: skip
        if v > best_v:
            best_v, best_x = v, x
    return best_v, best_x


def _split(lo: torch.Tensor, hi: torch.Tensor, scale: torch.Tensor) -> tuple:
    """Halve each box along its widest side (relative to the domain's extent)."""
    dim = torch.argmax((hi - lo) / scale, dim=1)
    rows = torch.arange(lo.shape[0])
    mid = 0.5 * (lo[rows, dim] + hi[rows, dim])
    hi_left, lo_right = hi.clone(), lo.clone()
    hi_left[rows, dim] = mid
    lo_right[rows, dim] = mid
    return torch.cat([lo, lo_right]), torch.cat([hi_left, hi])
