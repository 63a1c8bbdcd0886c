"""What a safety reviewer asks of an adaptation: the :class:`StabilitySpec` and its parts.

Any subset of claims may be given. Bounds are floats that remember the exact decimal the reviewer
wrote (:class:`ExactFloat`, made by the YAML loader from the scalar's text); every tier proves and
refutes against that exact rational (:func:`exact_value`), never against its nearest double.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import torch

NORMS = ("l2", "linf")


class ExactFloat(float):
    """A float that remembers the exact rational it stands for (the decimal as written).

    ``ExactFloat("0.1")`` is the double nearest 1/10 and ``.exact == Fraction(1, 10)``; a plain
    float ``x`` stands for ``Fraction(repr(x))``, the shortest decimal that reads back as ``x``.
    Negation keeps the exact value; other arithmetic gives a plain float.
    """

    exact: Fraction

    def __new__(cls, value: float | str, exact: Fraction | str | None = None) -> ExactFloat:
        if exact is None:
            exact = Fraction(value) if isinstance(value, str) else Fraction(repr(float(value)))
        obj = super().__new__(cls, float(value))
        obj.exact = Fraction(exact)
        return obj

    def __neg__(self) -> ExactFloat:
        return ExactFloat(-float(self), -self.exact)

    def __reduce__(self):
        return ExactFloat, (float(self), self.exact)


def exact_value(x: float) -> Fraction:
    """The exact rational a limit stands for: ``x.exact`` for an :class:`ExactFloat`, else the
    shortest decimal of the float (``Fraction(repr(x))``)."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, ExactFloat):
        return x.exact
    return Fraction(repr(float(x)))


@dataclass(frozen=True)
class BoxDomain:
    """The input box ``lower[i] <= x[i] <= upper[i]``."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.lower) != len(self.upper) or not self.lower:
            raise ValueError("BoxDomain: lower and upper need the same non-zero length")
        if any(lo > hi for lo, hi in zip(self.lower, self.upper)):
            raise ValueError(f"BoxDomain: lower {self.lower} exceeds upper {self.upper}")


@dataclass(frozen=True)
class LinfBallDomain:
    """The union of Linf balls of ``radius`` around ``points`` (e.g. each query input).

    ``points=None`` means the points are given at certification time.
    """

    radius: float
    points: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        if not self.radius >= 0:
            raise ValueError(f"LinfBallDomain: radius must be >= 0, got {self.radius}")


Domain = BoxDomain | LinfBallDomain


@dataclass(frozen=True)
class TrustRegion:
    """``||theta_adapted - theta_meta||_norm <= bound`` for one module's parameters
    (times ``||theta_meta||_norm`` when ``relative``)."""

    module: str
    norm: str
    bound: float
    relative: bool = False

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"TrustRegion[{self.module}]: norm must be one of {NORMS}")

    @property
    def claim(self) -> str:
        return f"trust_region[{self.module}].{self.norm}" + (".relative" if self.relative else "")


@dataclass(frozen=True)
class LipschitzBound:
    """``Lip(f_adapted) <= bound`` with respect to ``norm`` on inputs and outputs."""

    norm: str
    bound: float

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"LipschitzBound: norm must be one of {NORMS}")


@dataclass(frozen=True)
class DeviationBound:
    """``max_{x in domain} |f_adapted(x)_j - f_meta(x)_j| <= max_abs[j]`` per output ``j``
    (a single value applies to every output)."""

    max_abs: tuple[float, ...]


@dataclass(frozen=True)
class OutputRange:
    """``lower[j] <= f_adapted(x)_j <= upper[j]`` over the domain (one value applies to all)."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]


@dataclass(frozen=True)
class StepSizeCheck:
    """Report ``step_size * smoothness estimate`` (< 2 for a stable step): never proved."""

    step_size: float


@dataclass(frozen=True)
class PredictionStability:
    """Classifier claims per domain box (an Linf ball around each query image):
    ``prediction_stable[i]``: the adapted model's top-1 class is the same everywhere in ball ``i``
    (``logit_c - logit_j > 0`` for every other class ``j``, ``c`` its class at the centre);
    with ``agree_with_meta``, also ``prediction_agrees[i]``: both models have that same top-1
    class everywhere in the ball (violated by a point where their top-1 classes differ)."""

    agree_with_meta: bool = False


@dataclass(frozen=True)
class StabilitySpec:
    """All claims for one adaptation; every field except ``domain`` is optional."""

    domain: Domain
    trust_regions: tuple[TrustRegion, ...] = ()
    lipschitz: tuple[LipschitzBound, ...] = ()
    deviation: DeviationBound | None = None
    output_range: OutputRange | None = None
    finite: bool = False
    step_size: StepSizeCheck | None = None
    prediction: PredictionStability | None = None
    source: str = field(default="<python>", compare=False)


def per_output(values: tuple[float, ...], m: int, what: str) -> list[ExactFloat]:
    """Broadcast a one-element tuple to ``m`` outputs, or check the length is ``m`` (values keep
    their exact decimal, see :class:`ExactFloat`)."""
    if len(values) == 1:
        return [_exact_float(values[0])] * m
    if len(values) != m:
        raise ValueError(f"{what}: {len(values)} values for a network with {m} outputs")
    return [_exact_float(v) for v in values]


def _exact_float(v: float) -> ExactFloat:
    return v if isinstance(v, ExactFloat) else ExactFloat(v)


def domain_boxes(domain: Domain, points: torch.Tensor | None = None) -> tuple:
    """The domain as a batch of boxes ``(lower, upper)``, each of shape ``(B, n)``, float64.

    Args:
        domain: a box or a union of Linf balls.
        points: ``(P, n)`` centres for a ``LinfBallDomain`` whose ``points`` is ``None``.
    """
    if isinstance(domain, BoxDomain):
        lo = torch.tensor([domain.lower], dtype=torch.float64)
        hi = torch.tensor([domain.upper], dtype=torch.float64)
        return lo, hi
    if points is None:
        if domain.points is None:
            raise ValueError("an Linf-ball domain without points needs points= at certification")
        points = torch.tensor(domain.points, dtype=torch.float64)
    points = points.to(torch.float64).reshape(points.shape[0], -1)
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    # p -/+ r is rounded to nearest: step one float outward so the box contains the true ball.
    return torch.nextafter(points - domain.radius, -inf), torch.nextafter(
        points + domain.radius, inf
    )
