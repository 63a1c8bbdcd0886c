"""The sinusoid regression family of Finn et al. (2017), exactly as in the MAML paper."""

from __future__ import annotations

import math

import torch

from metacompose.modules.space import Space
from metacompose.tasks.base import TaskBatch, check_interval, check_split


class SinusoidFamily:
    """y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5].

    Every split draws from the same distribution; disjointness of meta-train / meta-val / meta-test
    comes from their independent seeded streams (see :func:`metacompose.tasks.base.derive_seed`).
    """

    name = "sinusoid"
    metric = "mse"
    in_space = Space("vec", 1)
    out_dim = 1

    def __init__(
        self,
        *,
        amplitude: tuple[float, float] = (0.1, 5.0),
        phase: tuple[float, float] = (0.0, math.pi),
        x_range: tuple[float, float] = (-5.0, 5.0),
    ) -> None:
        self.amplitude = check_interval("amplitude", amplitude)
        if max(abs(a) for a in self.amplitude) == 0:
            raise ValueError(f"amplitude={list(amplitude)}: every target would be 0")
        self.phase = check_interval("phase", phase)
        self.x_range = check_interval("x_range", x_range, empty=False)

    def sample(
        self,
        n_tasks: int,
        *,
        shots: int,
        query: int,
        generator: torch.Generator,
        split: str = "train",
    ) -> TaskBatch:
        check_split(split)
        g = generator
        amp = _uniform((n_tasks, 1, 1), self.amplitude, g)
        phase = _uniform((n_tasks, 1, 1), self.phase, g)
        x = _uniform((n_tasks, shots + query, 1), self.x_range, g)
        y = amp * torch.sin(x - phase)
        return TaskBatch(
            support_x=x[:, :shots],
            support_y=y[:, :shots],
            query_x=x[:, shots:],
            query_y=y[:, shots:],
            info={"amplitude": amp.view(-1), "phase": phase.view(-1)},
        )


def _uniform(
    shape: tuple[int, ...], bounds: tuple[float, float], g: torch.Generator
) -> torch.Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(shape, generator=g)
