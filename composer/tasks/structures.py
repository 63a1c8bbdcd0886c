"""How two primitives make a task: the chain ``y = A g(f(x))`` and the sum ``y = a f(x) + b g(x)``.

A structure has two slots, ``f`` and ``g``, each filled from a registry of
:mod:`metacompose.tasks.primitives`. It turns one (f, g) pair, the inputs and the per-task
parameters into *terms*: the curves that the per-task amplitudes multiply (one for the chain, two
for the sum), so that ``y = sum_k amplitude_k * term_k``.
"""

from __future__ import annotations

from typing import Protocol

import torch

from metacompose.tasks.primitives import INNER, OUTER, Primitive

Tensor = torch.Tensor


class Structure(Protocol):
    """Attributes: ``name``; ``join`` (how a pair is written, ``"∘"`` or ``"+"``); ``registries``
    (the primitives slot f and slot g may hold); ``num_terms`` (amplitudes per task);
    ``interchangeable`` (swapping f and g gives the same task: routing is scored as a set)."""

    name: str
    join: str
    registries: tuple[dict[str, Primitive], dict[str, Primitive]]
    num_terms: int
    interchangeable: bool

    def terms(
        self, f: Primitive, g: Primitive, x: Tensor, p: Tensor | None, q: Tensor | None
    ) -> list[Tensor]:
        """The ``num_terms`` curves, each broadcast from ``x`` and the parameters ``p`` (of f),
        ``q`` (of g; ``None`` when g has no parameter)."""
        ...


class Chain:
    """``y = A g(f(x; p); q)``: f from :data:`INNER`, g from :data:`OUTER`."""

    name = "chain"
    join = "∘"
    registries = (INNER, OUTER)
    num_terms = 1
    interchangeable = False

    def terms(
        self, f: Primitive, g: Primitive, x: Tensor, p: Tensor | None, q: Tensor | None
    ) -> list[Tensor]:
        return [g(f(x, p), q)]


class Sum:
    """``y = a f(x; p) + b g(x; q)`` (the "sums" family of Alet et al., 2018): both slots from
    :data:`INNER`, each term with its own amplitude."""

    name = "sum"
    join = "+"
    registries = (INNER, INNER)
    num_terms = 2
    interchangeable = True

    def terms(
        self, f: Primitive, g: Primitive, x: Tensor, p: Tensor | None, q: Tensor | None
    ) -> list[Tensor]:
        return [f(x, p), g(x, q)]


STRUCTURES: dict[str, type] = {"chain": Chain, "sum": Sum}


def build_structure(name: str) -> Structure:
    """The structure named ``name``; one-line error naming the known ones."""
    if name not in STRUCTURES:
        raise ValueError(f"unknown structure {name!r}; known: {sorted(STRUCTURES)}")
    return STRUCTURES[name]()
