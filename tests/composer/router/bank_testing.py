"""Shared by test_bank_overlap.py and test_bank_coverage.py: a three-candidate bank with known
tables, its curves read independently (``np.interp`` at the warped inputs, in float64) and the
least-squares residual written out with ``np.linalg.lstsq``."""

import numpy as np
import torch

from metacompose.modules.warp_line import WarpLineBank

KNOTS, SPAN = 181, 9.0  # knots every 0.1: the tables' corners sit on knots
X = np.linspace(-3.0, 3.0, 241)
GRID = np.linspace(-1.0, 1.0, 21)
SHIFTS = [-0.6, 5.0, -1.0]


def tables() -> np.ndarray:
    """A vee whose corner reaches x in [-0.6, 0.6]; a second vee, cornered at u = 5, whose corner
    x = 5 - 5c lies on [-3, 3] from context 0.4 on (3, 2.5, ..., 1 at 0.8, 0.5, 0 at 1) and past
    it before (a straight line over x); a step."""
    u = np.linspace(-SPAN, SPAN, KNOTS)
    return np.stack([np.abs(u) / 2 - 1, np.abs(u - 5) / 2 - 1, np.tanh(3 * u)])


def bank() -> WarpLineBank:
    b = WarpLineBank(count=3, knots=KNOTS, span=SPAN, contexts=21)
    with torch.no_grad():
        b.table.copy_(torch.tensor(tables()))
        b.slope.zero_()
        b.shift.copy_(torch.tensor(SHIFTS))
    return b


def curves() -> np.ndarray:
    """(C, G, N): every candidate at every context, read by np.interp (constant outside)."""
    t = tables().astype(np.float32).astype(np.float64)  # as the bank stores them
    u = np.linspace(-SPAN, SPAN, KNOTS)
    shifts = np.float32(SHIFTS).astype(np.float64)  # the bank's parameters are float32 too
    return np.stack([[np.interp(X + s * c, u, t[k]) for c in GRID] for k, s in enumerate(shifts)])


def ref_residual(a: np.ndarray, b: np.ndarray, offset: bool) -> float:
    design = np.stack([b, np.ones_like(b)], 1) if offset else b[:, None]
    coef, *_ = np.linalg.lstsq(design, a, rcond=None)
    return float(np.sum((a - design @ coef) ** 2) / (len(a) * a.var()))
