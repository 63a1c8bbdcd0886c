"""Re-seeding an idle candidate within a replica while the annealing temperature falls.

As ``tau`` falls, a candidate can lose nearly all its tasks to the others (no gradient reaches it
after that) while another candidate of its bank serves two primitives. At the steps asked, in each
bank of each replica, the candidate whose removal raises the tasks' best fit least is overwritten by
a perturbed copy of the candidate that carries the most fit error, and annealing can then split
the two copies. The move is made only when that removal cost is below :data:`TOLERANCE` times the
replica's mean best fit on the meta-batch: a candidate that serves a primitive of its own costs far
more to remove, so a replica that has every primitive in a candidate of its own is left alone.
Unlike split-and-merge through the replicas (tried and reverted, docs/router.md), no replica
replaces another: the population keeps its diversity, and the lowest running fit still picks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import distributed as dist

from metacompose.modules.warp_line import WarpLineBank

Tensor = torch.Tensor
log = logging.getLogger(__name__)
NOISE = 0.05  # the perturbed copy's table noise, in units of its source's table spread
TOLERANCE = 0.5  # move when removing a candidate raises the mean best fit by less than this share


@dataclass(frozen=True)
class Move:
    """In bank ``slot`` of replica ``replica``, candidate ``victim`` (removal cost ``cost``, the
    replica's mean best fit ``fit``) was overwritten by a perturbed copy of ``source``."""

    replica: int
    slot: str
    victim: int
    source: int
    cost: float
    fit: float


def candidate_scores(best_pairs: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Per bank (f, then g): each candidate's removal cost and the fit error it carries.

    Args:
        best_pairs: ``(C, D, T)`` each pair's fit (at its best contexts) of each task.

    Returns:
        ``[(cost_f (C,), error_f (C,)), (cost_g (D,), error_g (D,))]``: the mean over tasks of
        how much the best fit grows when the candidate is removed (``inf`` for a bank's only
        candidate), and the sum of the best fits of the tasks whose best pair holds it, over the
        number of tasks.
    """
    _, d, t = best_pairs.shape
    best, at = best_pairs.flatten(0, 1).min(0)
    out = []
    for pairs, owner in ((best_pairs, at // d), (best_pairs.transpose(0, 1), at % d)):
        n = pairs.shape[0]
        cost = torch.full((n,), float("inf"), dtype=best.dtype, device=best.device)
        for k in range(n if n > 1 else 0):
            rest = torch.cat([pairs[:k], pairs[k + 1 :]]).flatten(0, 1).amin(0)
            cost[k] = (rest - best).mean()
        error = torch.zeros(n, dtype=best.dtype, device=best.device).index_add_(0, owner, best)
        out.append((cost, error / t))
    return out


def all_ranks_mean(value: Tensor) -> Tensor:
    """``value`` averaged over the ranks of a distributed run (itself in one process), so that
    every rank makes the same move."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


@torch.no_grad()
def copy_candidate(bank: WarpLineBank, victim: int, source: int, generator: torch.Generator):
    """Candidate ``victim`` becomes candidate ``source`` (table, stretch and shift) with its table
    perturbed, in place (the optimizer keeps the same parameters)."""
    table = bank.table[source]
    noise = torch.randn(table.shape, generator=generator, dtype=table.dtype)
    bank.table[victim] = table + NOISE * table.std() * noise.to(table.device)
    bank.slope[victim] = bank.slope[source]
    bank.shift[victim] = bank.shift[source]


@torch.no_grad()
def reseed(
    *, f_bank: WarpLineBank, g_bank: WarpLineBank, grid_mse: Tensor, replica: int, seed: int
) -> list[Move]:
    """One replica's moves, in place: in each bank, the idle candidate (removal cost below
    :data:`TOLERANCE` times the mean best fit) becomes a perturbed copy of the candidate of most
    fit error. ``grid_mse``: ``(C G, D G, T)`` every pair's fit of each task at every context pair
    of the banks' grid (``G`` contexts); ``seed`` seeds the perturbations (no global random
    state is read)."""
    g = f_bank.contexts  # each pair at its best contexts: (C, D, T)
    best_pairs = grid_mse.unflatten(1, (-1, g)).unflatten(0, (-1, g)).amin((1, 3))
    fit = float(all_ranks_mean(best_pairs.flatten(0, 1).amin(0).mean()))
    generator = torch.Generator().manual_seed(seed)
    moves = []
    for slot, bank, (cost, error) in zip("fg", (f_bank, g_bank), candidate_scores(best_pairs)):
        cost, error = all_ranks_mean(cost), all_ranks_mean(error)
        victim = int(cost.argmin())
        if len(cost) < 2 or not float(cost[victim]) < TOLERANCE * fit:
            continue
        others = error.clone()
        others[victim] = -float("inf")
        source = int(others.argmax())
        copy_candidate(bank, victim, source, generator)
        moves.append(Move(replica, slot, victim, source, float(cost[victim]), fit))
        log.info("reseeded %s", moves[-1])
    return moves
