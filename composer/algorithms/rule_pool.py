"""Persistent unrolls of a learned update rule on random networks (persistent truncated
backpropagation through the unroll, as learned_optimization and VeLO meta-train).

A short unroll from a fresh random init trains the rule only on the first steps of an
optimization: a rule trained so is fitted to them and takes steps too small later on (the
short-horizon bias). A pool of ``size`` random-network adaptations instead carries each network's
parameters and optimizer state from one meta-iteration to the next: each meta-iteration advances
one of them by a window of steps with the meta-gradient, until it has taken ``horizon`` steps,
and then replaces it with a fresh network. The rule is so trained on every step up to ``horizon``
at the cost of a short unroll per meta-iteration.

The pool is training state, not a parameter: it is not checkpointed (a resumed run refills it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from metacompose.algorithms.inner_loop import Params, broadcast_tasks
from metacompose.algorithms.learned_inner_loop import OptState
from metacompose.graph import ModuleGraph


@dataclass
class PooledUnroll:
    """One random network's adaptation: its parameters ``(T, ...)`` and optimizer state (``None``
    before its first step) on a meta-batch's support sets ``x: (T, K, ...)``, ``y``."""

    graph: ModuleGraph
    fast: Params
    state: OptState | None
    x: torch.Tensor
    y: torch.Tensor

    @property
    def steps(self) -> int:
        return 0 if self.state is None else self.state.t


class PersistentUnrolls:
    """A pool of random-network adaptations carried across meta-iterations.

    Args:
        size: adaptations in the pool; meta-iteration ``step`` advances slot ``step % size``.
        horizon: steps after which an adaptation is replaced by a fresh one.
    """

    def __init__(self, *, size: int, horizon: int) -> None:
        if size < 1 or horizon < 1:
            raise ValueError(f"random_net_pool and random_net_unroll must be >= 1, got {size}, "
                             f"{horizon}")  # fmt: skip
        self.horizon = int(horizon)
        self.slots: list[PooledUnroll | None] = [None] * int(size)

    def take(
        self,
        step: int,
        fresh: Callable[[], tuple[ModuleGraph, Params, torch.Tensor, torch.Tensor]],
    ) -> tuple[int, PooledUnroll]:
        """``(slot, adaptation)`` to advance at meta-iteration ``step``: the slot's own, or a fresh
        one from ``fresh() -> (graph, its initial parameters, x, y)`` where the slot is empty or
        its adaptation has taken ``horizon`` steps."""
        i = step % len(self.slots)
        held = self.slots[i]
        if held is None or held.steps >= self.horizon:
            graph, init, x, y = fresh()
            fast = broadcast_tasks(init, x.shape[0])
            held = self.slots[i] = PooledUnroll(graph, fast, None, x, y)
        return i, held

    def put(self, slot: int, fast: Params, state: OptState) -> None:
        """Store slot ``slot``'s adaptation after its window (detached: the next window starts a
        new truncation)."""
        held = self.slots[slot]
        if held is None:
            raise ValueError(f"slot {slot} was never taken")
        self.slots[slot] = PooledUnroll(held.graph, {k: v.detach() for k, v in fast.items()},
                                        state.detach(), held.x, held.y)  # fmt: skip
