"""Scalar quantities that claims bound over the input domain: ``value(x) <= threshold`` for all x.

A deviation claim ``|d_j| <= B`` is the objective ``|f_adapted(x)_j - f_meta(x)_j|``; an output
range claim is two objectives, ``f_adapted(x)_j <= hi`` and ``-f_adapted(x)_j <= -lo``. Each
objective gives a sound upper bound per box (from :mod:`metacompose.symbolic.diff_propagation`) and its exact
value at points (a torch forward, which is also how counterexamples are replayed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metacompose.symbolic.diff_propagation import PairBounds
from metacompose.symbolic.network import NetworkPair

KINDS = ("deviation", "output_upper", "output_lower")


@dataclass(frozen=True)
class Objective:
    """``kind`` in :data:`KINDS`, on output ``index``."""

    kind: str
    index: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Objective kind must be one of {KINDS}, got {self.kind!r}")

    def upper(self, ob: PairBounds) -> torch.Tensor:
        """Sound upper bound of the objective on each box, shape ``(B,)``."""
        j = self.index
        if self.kind == "deviation":
            return torch.maximum(ob.diff.hi[:, j], -ob.diff.lo[:, j])
        if self.kind == "output_upper":
            return ob.adapted.hi[:, j]
        return -ob.adapted.lo[:, j]

    def value(self, pair: NetworkPair, x: torch.Tensor) -> torch.Tensor:
        """The objective at points ``x`` of shape ``(S, n)``: shape ``(S,)`` (differentiable)."""
        j = self.index
        if self.kind == "deviation":
            return pair.deviation(x)[:, j].abs()
        y = pair.adapted(x)[:, j]
        return y if self.kind == "output_upper" else -y

    def witness_output(self, pair: NetworkPair, x: torch.Tensor) -> torch.Tensor:
        """What a witness reports as ``Y``: the deviation vector or the adapted outputs, ``(m,)``."""
        x = x.reshape(1, -1)
        with torch.no_grad():
            y = pair.deviation(x) if self.kind == "deviation" else pair.adapted(x)
        return y[0]


def in_boxes(x: torch.Tensor, xlo: torch.Tensor, xhi: torch.Tensor) -> bool:
    """Whether point ``x`` of shape ``(n,)`` lies in at least one of the boxes ``(B, n)``."""
    return bool(((x >= xlo) & (x <= xhi)).all(dim=1).any())
