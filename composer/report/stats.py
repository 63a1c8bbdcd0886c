"""95% intervals: over tasks (normal approximation) and over seeds (Student's t)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy import stats


@dataclass
class Estimate:
    """A mean with the half-width of its 95% interval (``ci95 = nan`` when ``n < 2``)."""

    mean: float
    ci95: float
    n: int

    def to_json_dict(self) -> dict:
        return {
            "mean": self.mean,
            "ci95": None if math.isnan(self.ci95) else self.ci95,
            "n": self.n,
        }

    def text(self, digits: int = 4) -> str:
        if math.isnan(self.ci95):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.ci95:.{digits}f}"


def over_tasks(values: torch.Tensor) -> Estimate:
    """Mean of ``(N,)`` per-task values and ``1.96 * sd / sqrt(N)`` (many tasks: normal)."""
    v = values.detach().double().flatten()
    n = v.numel()
    sd = float(v.std(unbiased=True)) if n > 1 else math.nan
    return Estimate(mean=float(v.mean()), ci95=1.96 * sd / math.sqrt(n) if n > 1 else math.nan, n=n)


def over_seeds(means: list[float]) -> Estimate:
    """Mean over per-seed results and the Student-t half-width ``t_{0.975, n-1} * sd / sqrt(n)``."""
    n = len(means)
    mean = sum(means) / n
    if n < 2:
        return Estimate(mean=mean, ci95=math.nan, n=n)
    sd = math.sqrt(sum((m - mean) ** 2 for m in means) / (n - 1))
    return Estimate(mean=mean, ci95=float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n), n=n)


def difference(a: Estimate, b: Estimate) -> Estimate:
    """``a - b`` for independent estimates: half-widths add in quadrature."""
    return Estimate(mean=a.mean - b.mean, ci95=math.hypot(a.ci95, b.ci95), n=min(a.n, b.n))
