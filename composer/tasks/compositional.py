"""Compositional regression: y = A g(f(x)) with an inner primitive f and an outer primitive g.

Each primitive has per-task continuous parameters. A fixed set of (f, g) combinations is held out of
meta-training entirely, so that meta-test can score generalisation to *unseen combinations* of
seen parts. Every task's true primitives are exposed in ``TaskBatch.info`` (``"f"``, ``"g"``: int64
ids into :attr:`CompositionalFamily.inner` / :attr:`CompositionalFamily.outer`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from composer.tasks.base import TaskBatch, check_split
from modules.space import Space

Tensor = torch.Tensor

# Inner primitives: x -> u (values roughly in [-1.4, 1.4]). Each gets a (T, 1, 1) parameter tensor
# ``p`` uniform in the family's ``param_range`` (default [0, 1)) that it maps to its own parameter.
INNER: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "sine": lambda x, p: torch.sin((2.0 + p) * x + math.pi * p),  # frequency 2-3, phase 0-pi
    "ramp": lambda x, p: (0.25 + 0.2 * p) * x,  # slope 0.25-0.45
    "bump": lambda x, p: 2.0 * torch.exp(-((x - (2 * p - 1)) ** 2)) - 1.0,  # centre -1..1
    "step": lambda x, p: torch.tanh(3.0 * (x - (2 * p - 1))),  # edge at -1..1
}

# Outer primitives: u -> y before the amplitude.
OUTER: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda u: u,
    "square": lambda u: u**2,
    "relu": lambda u: torch.relu(u),
    "cos": lambda u: torch.cos(math.pi * u),
}

# One held-out partner per inner and per outer primitive (a permutation), so that every primitive
# is still seen in meta-training with three partners.
DEFAULT_HELD_OUT = (("sine", "square"), ("ramp", "relu"), ("bump", "cos"), ("step", "linear"))

COMBOS = ("seen", "held_out", "all")


class CompositionalFamily:
    """Tasks ``y = A * g(f(x))``, ``x ~ U[x_range]``, ``A ~ U[amplitude]``.

    Splits "train" and "val" draw only *seen* (f, g) combinations; "test" draws seen combinations by
    default and the held-out ones with ``sample(..., combos="held_out")``.

    Args:
        inner: names of the inner primitives (keys of ``INNER``).
        outer: names of the outer primitives (keys of ``OUTER``).
        held_out: ``[f, g]`` pairs never drawn in meta-training.
        amplitude: range of the output amplitude ``A``.
        x_range: input range.
        param_range: range of the inner primitive's parameter ``p`` (within ``[0, 1]``); a
            narrower range makes each primitive closer to one fixed shape.
        descriptor: ``"none"``, or ``"onehot"`` to give the learner the one-hot of (f, g) as a
            ``(T, len(inner) + len(outer))`` task descriptor (context-aware adaptation).
    """

    name = "compositional"
    metric = "mse"
    in_space = Space("vec", 1)
    out_dim = 1

    def __init__(
        self,
        *,
        inner: list[str] | tuple[str, ...] = tuple(INNER),
        outer: list[str] | tuple[str, ...] = tuple(OUTER),
        held_out: list[list[str]] | tuple[tuple[str, str], ...] = DEFAULT_HELD_OUT,
        amplitude: tuple[float, float] = (0.5, 2.0),
        x_range: tuple[float, float] = (-3.0, 3.0),
        param_range: tuple[float, float] = (0.0, 1.0),
        descriptor: str = "none",
    ) -> None:
        for name, table, kind in [(n, INNER, "inner") for n in inner] + [
            (n, OUTER, "outer") for n in outer
        ]:
            if name not in table:
                raise ValueError(f"unknown {kind} primitive {name!r}; known: {sorted(table)}")
        if not 0.0 <= param_range[0] <= param_range[1] <= 1.0:
            raise ValueError(
                f"param_range must satisfy 0 <= lo <= hi <= 1, got {list(param_range)}"
            )
        if descriptor not in ("none", "onehot"):
            raise ValueError(f"descriptor must be 'none' or 'onehot', got {descriptor!r}")
        self.inner = tuple(inner)
        self.outer = tuple(outer)
        held = set()
        for pair in held_out:
            if len(pair) != 2 or pair[0] not in self.inner or pair[1] not in self.outer:
                raise ValueError(f"held_out pair {list(pair)} must be [inner, outer] primitives")
            held.add((self.inner.index(pair[0]), self.outer.index(pair[1])))
        all_pairs = [(i, j) for i in range(len(self.inner)) for j in range(len(self.outer))]
        self.held_out = tuple(p for p in all_pairs if p in held)
        self.seen = tuple(p for p in all_pairs if p not in held)
        if not self.seen:
            raise ValueError("held_out leaves no (f, g) combination for meta-training")
        self.amplitude = tuple(amplitude)
        self.x_range = tuple(x_range)
        self.param_range = tuple(param_range)
        self.descriptor = descriptor

    @property
    def factors(self) -> dict[str, tuple[str, ...]]:
        """Categorical ground-truth keys of ``TaskBatch.info`` and the names of their values."""
        return {"f": self.inner, "g": self.outer}

    def sample(
        self,
        n_tasks: int,
        *,
        shots: int,
        query: int,
        generator: torch.Generator,
        split: str = "train",
        combos: str = "seen",
    ) -> TaskBatch:
        """Draw ``n_tasks`` tasks; ``combos`` picks seen, held-out or all (f, g) combinations.

        ``info`` holds ``f``, ``g`` (int64 ids), ``held_out`` (int64 0/1), ``amplitude`` and
        ``param`` (the inner primitive's parameter in ``param_range``), each ``(T,)``.
        """
        check_split(split)
        if combos not in COMBOS:
            raise ValueError(f"combos must be one of {COMBOS}, got {combos!r}")
        if combos != "seen" and split != "test":
            raise ValueError(
                f"held-out combinations are only drawn for split 'test', not {split!r}"
            )
        pool = {"seen": self.seen, "held_out": self.held_out, "all": self.seen + self.held_out}
        pairs = torch.tensor(pool[combos], dtype=torch.int64)
        if len(pairs) == 0:
            raise ValueError("this family has no held-out combinations")
        g = generator
        pick = pairs[torch.randint(len(pairs), (n_tasks,), generator=g)]
        f_id, g_id = pick[:, 0], pick[:, 1]
        lo, hi = self.param_range
        p = lo + (hi - lo) * torch.rand((n_tasks, 1, 1), generator=g)
        lo, hi = self.amplitude
        amp = lo + (hi - lo) * torch.rand((n_tasks, 1, 1), generator=g)
        lo, hi = self.x_range
        x = lo + (hi - lo) * torch.rand((n_tasks, shots + query, 1), generator=g)
        y = torch.empty_like(x)
        for t in range(n_tasks):
            u = INNER[self.inner[int(f_id[t])]](x[t], p[t])
            y[t] = amp[t] * OUTER[self.outer[int(g_id[t])]](u)
        held = torch.tensor([(int(a), int(b)) in self.held_out for a, b in pick], dtype=torch.int64)
        descriptor = None
        if self.descriptor == "onehot":
            descriptor = torch.cat(
                [
                    torch.nn.functional.one_hot(f_id, len(self.inner)),
                    torch.nn.functional.one_hot(g_id, len(self.outer)),
                ],
                dim=1,
            ).float()
        return TaskBatch(
            support_x=x[:, :shots],
            support_y=y[:, :shots],
            query_x=x[:, shots:],
            query_y=y[:, shots:],
            descriptor=descriptor,
            info={
                "f": f_id,
                "g": g_id,
                "held_out": held,
                "amplitude": amp.view(-1),
                "param": p.view(-1),
            },
        )
