"""The primitive functions of the compositional family, by name.

``INNER`` primitives read the input ``x`` (drawn in ``[-3, 3]`` by default) and write values
roughly in ``[-1.5, 1.5]``; ``OUTER`` primitives read such a value ``u``. Each primitive maps a
per-task parameter ``p`` (uniform in ``[0, 1)``, or the family's ``param_range``; a tensor that
broadcasts against the input, e.g. ``(T, 1, 1)``) to its own parameter: a frequency, a shift, a
gain. The first nine outer primitives have no parameter (``param=None``): they are the fixed
shapes of the original presets, kept so that those presets draw what they always drew.

Every inner primitive is also a term of the sum structure ``y = a f1(x) + b f2(x)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class Primitive:
    """One primitive: ``fn(x, p)``, or ``fn(x)`` when it has no per-task parameter.

    Attributes:
        fn: the function; elementwise in ``x``.
        param: what the per-task parameter ``p`` in ``[0, 1)`` sets (e.g. ``"frequency 2-3"``);
            ``None`` for a primitive without one.
    """

    fn: Callable[..., Tensor]
    param: str | None = None

    def __call__(self, x: Tensor, p: Tensor | None = None) -> Tensor:
        """``x`` of any shape; ``p`` broadcastable against it (ignored without a parameter)."""
        if self.param is None:
            return self.fn(x)
        if p is None:
            raise ValueError(f"this primitive needs its parameter ({self.param})")
        return self.fn(x, p)


def _centre(p: Tensor) -> Tensor:
    return 2 * p - 1


INNER: dict[str, Primitive] = {
    # the primitives of the presets (unchanged)
    "sine": Primitive(
        lambda x, p: torch.sin((2.0 + p) * x + math.pi * p), "frequency 2-3, phase 0-pi"
    ),
    "ramp": Primitive(lambda x, p: (0.25 + 0.2 * p) * x, "slope 0.25-0.45"),
    "bump": Primitive(
        lambda x, p: 2.0 * torch.exp(-((x - (2 * p - 1)) ** 2)) - 1.0, "centre -1..1"
    ),
    "step": Primitive(lambda x, p: torch.tanh(3.0 * (x - (2 * p - 1))), "edge at -1..1"),
    "vee": Primitive(lambda x, p: torch.abs(x - (2 * p - 1)) / 2.0 - 1.0, "corner at -1..1"),
    # more shapes
    "parabola": Primitive(
        lambda x, p: ((x - _centre(p)) / 2.0) ** 2 / 2.0 - 1.0, "vertex at -1..1"
    ),
    "saw": Primitive(
        lambda x, p: 2.0 * torch.remainder((x + 2.0 * p) / 2.0, 1.0) - 1.0, "phase 0-2 (period 2)"
    ),
    "sinc": Primitive(lambda x, p: 2.0 * torch.sinc(x - _centre(p)) - 0.5, "centre -1..1"),
    "chirp": Primitive(lambda x, p: torch.sin((0.5 + 0.5 * p) * x**2), "rate 0.5-1"),
    "cosine": Primitive(lambda x, p: torch.cos((1.0 + p) * x), "frequency 1-2"),
}

OUTER: dict[str, Primitive] = {
    # fixed shapes of the presets (no parameter; unchanged)
    "linear": Primitive(lambda u: u),
    "square": Primitive(lambda u: u**2),
    "relu": Primitive(lambda u: torch.relu(u)),
    "cos": Primitive(lambda u: torch.cos(math.pi * u)),
    "abs": Primitive(lambda u: torch.abs(u)),
    "sin_pi": Primitive(lambda u: torch.sin(math.pi * u)),
    "cos_2pi": Primitive(lambda u: torch.cos(2.0 * math.pi * u)),
    "sin_2pi": Primitive(lambda u: torch.sin(2.0 * math.pi * u)),
    "squash": Primitive(lambda u: torch.tanh(3.0 * u)),
    # with a per-task parameter
    "sin_freq": Primitive(lambda u, p: torch.sin((1.0 + p) * math.pi * u), "frequency pi-2pi"),
    "cos_freq": Primitive(lambda u, p: torch.cos((1.0 + p) * math.pi * u), "frequency pi-2pi"),
    "square_shift": Primitive(lambda u, p: (u - (p - 0.5)) ** 2, "shift -0.5..0.5"),
    "relu_shift": Primitive(lambda u, p: torch.relu(u - (p - 0.5)), "shift -0.5..0.5"),
    "abs_shift": Primitive(lambda u, p: torch.abs(u - (p - 0.5)), "shift -0.5..0.5"),
    "tanh_gain": Primitive(lambda u, p: torch.tanh((1.0 + 4.0 * p) * u), "gain 1-5"),
    "gauss": Primitive(lambda u, p: torch.exp(-(((u - (p - 0.5)) / 0.5) ** 2)), "centre -0.5..0.5"),
    "exp_rate": Primitive(lambda u, p: torch.exp((0.5 + p) * u), "rate 0.5-1.5"),
}

__all__ = ["INNER", "OUTER", "Primitive"]
