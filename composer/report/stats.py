"""95% intervals over tasks (normal approximation) and over seeds (Student's t); divergence.

An estimate *diverged* when its mean is not finite or exceeds ``DIVERGENCE_FACTOR`` times the
reference value (the metric before adaptation, step 0, on the same tasks): such a mean says only
that adaptation blew up, so it is reported as ``diverged`` (JSON: ``"diverged": true``, mean null)
and never drawn as a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from metacompose.report.student_t import t_ppf
from metacompose.stats import ci95_over_tasks

DIVERGENCE_FACTOR = 1e6


def is_diverged(value: float, reference: float | None = None) -> bool:
    """Whether ``value`` is non-finite or above ``DIVERGENCE_FACTOR * reference`` (``reference > 0``)."""
    if not math.isfinite(value):
        return True
    if reference is None or not math.isfinite(reference) or reference <= 0:
        return False
    return abs(value) > DIVERGENCE_FACTOR * reference


@dataclass
class Estimate:
    """A mean with the half-width of its 95% interval (``ci95 = nan`` when ``n < 2``).

    ``diverged``: the mean is not a usable number (see the module docstring); ``n_diverged``: how
    many of the ``n`` values diverged on their own.
    """

    mean: float
    ci95: float
    n: int
    diverged: bool = False
    n_diverged: int = 0

    def to_json_dict(self) -> dict:
        if self.diverged:
            return {"mean": None, "ci95": None, "n": self.n, "diverged": True,
                    "n_diverged": self.n_diverged}  # fmt: skip
        return {
            "mean": self.mean,
            "ci95": None if math.isnan(self.ci95) else self.ci95,
            "n": self.n,
            "diverged": False,
        }

    def text(self, digits: int = 4) -> str:
        if self.diverged:
            return "diverged"
        if math.isnan(self.ci95):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.ci95:.{digits}f}"


def over_tasks(values: torch.Tensor, *, reference: float | None = None) -> Estimate:
    """Mean of ``(N,)`` per-task values and ``1.96 * sd / sqrt(N)`` (many tasks: normal;
    :func:`metacompose.stats.ci95_over_tasks`).

    Args:
        reference: the metric before adaptation on the same tasks; a mean above
            ``DIVERGENCE_FACTOR * reference`` (or not finite) is marked diverged.
    """
    v = values.detach().double().flatten()
    n = v.numel()
    mean = float(v.mean())
    per_task = ~torch.isfinite(v)
    if reference is not None and math.isfinite(reference) and reference > 0:
        per_task |= v.abs() > DIVERGENCE_FACTOR * reference
    if is_diverged(mean, reference):
        return Estimate(mean=mean, ci95=math.nan, n=n, diverged=True,
                        n_diverged=int(per_task.sum()))  # fmt: skip
    return Estimate(mean=mean, ci95=float(ci95_over_tasks(v)), n=n, n_diverged=int(per_task.sum()))


def over_seeds(means: list[float | None]) -> Estimate:
    """Mean over per-seed results and the Student-t half-width ``t_{0.975, n-1} * sd / sqrt(n)``.

    A ``None`` or non-finite per-seed mean (a diverged seed) makes the estimate diverged.
    """
    n = len(means)
    bad = sum(m is None or not math.isfinite(m) for m in means)
    if bad:
        return Estimate(mean=math.nan, ci95=math.nan, n=n, diverged=True, n_diverged=bad)
    mean = sum(means) / n
    if n < 2:
        return Estimate(mean=mean, ci95=math.nan, n=n)
    sd = math.sqrt(sum((m - mean) ** 2 for m in means) / (n - 1))
    return Estimate(mean=mean, ci95=t_ppf(0.975, n - 1) * sd / math.sqrt(n), n=n)


def paired_ratio(a: list[float], b: list[float]) -> Estimate:
    """``mean(a) / mean(b)`` for paired per-task values (the same tasks, two learners) and the
    half-width of its 95% interval by the delta method: ``1.96 * sd(a - R b) / (sqrt(N) mean(b))``.
    Diverged when a value is not finite or ``mean(b) <= 0``; ``ci95`` nan when ``N < 2``."""
    if len(a) != len(b):
        raise ValueError(f"paired values differ in length: {len(a)} vs {len(b)}")
    n = len(a)
    x, y = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    if n == 0 or not (torch.isfinite(x).all() and torch.isfinite(y).all()) or y.mean() <= 0:
        return Estimate(mean=math.nan, ci95=math.nan, n=n, diverged=True)
    ratio = float(x.mean() / y.mean())
    if n < 2:
        return Estimate(mean=ratio, ci95=math.nan, n=n)
    return Estimate(mean=ratio, ci95=float(ci95_over_tasks(x - ratio * y) / y.mean()), n=n)


def worst_share(a: list[float], b: list[float], k: int) -> float | None:
    """The share of A's excess over B, ``sum(a - b)`` over paired per-task values, that the ``k``
    tasks with the largest ``a - b`` carry (above 1 when A is better than B on the other tasks):
    whether a ratio is a few tasks or all of them. ``None`` when A's excess is not positive or a
    value is not finite."""
    if len(a) != len(b):
        raise ValueError(f"paired values differ in length: {len(a)} vs {len(b)}")
    if k < 1:
        raise ValueError(f"k={k}: must be at least 1")
    d = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    if not torch.isfinite(d).all() or d.sum() <= 0:
        return None
    return float(d.topk(min(k, len(d))).values.sum() / d.sum())


def difference(a: Estimate, b: Estimate) -> Estimate:
    """``a - b`` for independent estimates: half-widths add in quadrature; diverged if either is."""
    if a.diverged or b.diverged:
        return Estimate(mean=math.nan, ci95=math.nan, n=min(a.n, b.n), diverged=True,
                        n_diverged=max(a.n_diverged, b.n_diverged))  # fmt: skip
    return Estimate(mean=a.mean - b.mean, ci95=math.hypot(a.ci95, b.ci95), n=min(a.n, b.n))
