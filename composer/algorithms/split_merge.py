"""Split-and-merge moves for annealed candidates (after SMEM, Ueda et al. 2000), through the
replicas: the worst replicas are replaced by copies of the best, each with one bank rearranged.

Annealing lands in merges: one candidate serves two primitives and the primitive it leaves is
split over two candidates, a local optimum whose fit can be as good as the right decomposition's.
A move undoes one merge-and-split in a copy: in one bank it overwrites the candidate whose removal
costs the tasks least (half of a split) with a perturbed copy of the candidate that carries the
most fit error (the merged one), and annealing separates the two copies. The copy replaces the
replica with the highest running fit and trains on beside the original, so a move that does not
pay off is not kept: the lowest running fit still picks the replica evaluation uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import distributed as dist

from metacompose.modules.warp_line import WarpLineBank

Tensor = torch.Tensor
NOISE = 0.05  # the perturbed copy's table noise, in units of its source's table spread


@dataclass(frozen=True)
class Move:
    """One replica replaced by a rearranged copy of another: in bank ``slot`` of the copy,
    candidate ``victim`` was overwritten by a perturbed copy of candidate ``source``."""

    replaced: int
    copied: int
    slot: str
    victim: int
    source: int


def candidate_scores(best_pairs: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Per bank (f, then g): each candidate's removal cost and fit error carried.

    Args:
        best_pairs: ``(C, D, T)`` each pair's fit (over its contexts) of each task.

    Returns:
        ``[(cost_f (C,), error_f (C,)), (cost_g (D,), error_g (D,))]``: the mean over tasks of
        how much the best fit grows when a candidate is removed (``inf`` if it is its bank's
        only one), and the sum over the tasks whose best pair holds it of their best fit, over
        the number of tasks.
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


def pick(cost: Tensor, error: Tensor) -> tuple[int, int] | None:
    """``(victim, source)``: the candidate of lowest removal cost, and the one of most fit error
    among the others; ``None`` for a bank of one candidate."""
    if len(cost) < 2:
        return None
    victim = int(cost.argmin())
    others = error.clone()
    others[victim] = -float("inf")
    return victim, int(others.argmax())


def all_ranks_mean(value: Tensor) -> Tensor:
    """``value`` averaged over the ranks of a distributed run (itself in one process), so that
    every rank makes the same move."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


@torch.no_grad()
def rearrange(bank: WarpLineBank, victim: int, source: int, generator: torch.Generator) -> None:
    """Candidate ``victim`` becomes candidate ``source`` (table, stretch and shift) with its
    table perturbed, in place (the optimizer keeps the same parameters)."""
    table = bank.table[source]
    noise = torch.randn(table.shape, generator=generator, dtype=table.dtype)
    bank.table[victim] = table + NOISE * table.std() * noise.to(table.device)
    bank.slope[victim] = bank.slope[source]
    bank.shift[victim] = bank.shift[source]


@torch.no_grad()
def split_merge(
    *,
    banks: dict[str, list[WarpLineBank]],
    fit: Tensor,
    amplitude: Tensor,
    best_pairs: Callable[[int], Tensor],
    seed: int,
) -> list[Move]:
    """Replace the worst replicas by rearranged copies of the best one, in place.

    With ``R`` replicas, ``min(2, R - 1)`` copies: with two, one per bank (f and g); with one,
    in the bank whose lowest removal cost is the lower. Each replaced replica takes the copied
    one's running ``fit`` and ``amplitude`` (so it competes from where the original stands).

    Args:
        banks: ``{"f": [...], "g": [...]}``, one bank per replica.
        fit: ``(R,)`` running fits (NaN: not trained yet); amplitude: ``(R,)``.
        best_pairs: replica -> ``(C, D, T)`` each pair's fit of each task of this meta-batch.
        seed: seeds the perturbations (no global random state is read).
    """
    replicas = len(fit)
    if replicas < 2 or not torch.isfinite(fit).any():
        return []
    ranked = torch.argsort(torch.nan_to_num(all_ranks_mean(fit), nan=float("inf"))).tolist()
    best = ranked[0]
    scores = [(slot, pick(*map(all_ranks_mean, s)), float(all_ranks_mean(s[0]).min()))
              for slot, s in zip(("f", "g"), candidate_scores(best_pairs(best)))]  # fmt: skip
    scores = [s for s in scores if s[1] is not None]
    if replicas == 2:
        scores = sorted(scores, key=lambda s: s[2])[:1]
    generator = torch.Generator().manual_seed(seed)
    moves = []
    for (slot, (victim, source), _), replaced in zip(scores, reversed(ranked[1:])):
        for s in ("f", "g"):
            banks[s][replaced].load_state_dict(banks[s][best].state_dict())
        rearrange(banks[slot][replaced], victim, source, generator)
        fit[replaced], amplitude[replaced] = fit[best], amplitude[best]
        moves.append(Move(replaced, best, slot, victim, source))
    return moves
