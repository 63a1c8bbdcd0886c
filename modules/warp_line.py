"""A bank of one-dimensional shapes, each read along a learned warp line of per-task contexts."""

from __future__ import annotations

import torch
from torch import nn

from metacompose.modules.base import TypedModule
from metacompose.modules.mlp import MLPBlock
from metacompose.modules.sizes import check_sizes
from metacompose.modules.space import Space

# The default bound on the warp's stretch per unit of context: ``1 + s c`` >= 0.4 on [-1, 1].
MAX_SLOPE_CHANGE = 0.6
INITS = ("random", "identity")


class WarpLineBank(TypedModule):
    """``count`` candidate shapes ``h_k(u)``, each read at ``u = (1 + s_k c) x + t_k c``.

    ``h_k`` is a table of ``knots`` values on ``[-span, span]``, read by linear interpolation and
    held constant outside; ``c`` in ``[-1, 1]`` is a per-task context (a stretch and a shift of the
    input along one learned line per candidate). ``forward`` reads every candidate at every context
    of the module's own grid; :meth:`on_grid` at any grid. The interpolated table is piecewise
    linear, so one candidate at one context is exactly a one-hidden-layer ReLU network
    (:meth:`as_relu_block`), which the verifier reads like any other MLP.

    Args:
        count: candidates.
        knots: table entries per candidate (>= 2).
        span: the tables cover ``[-span, span]``.
        contexts: the grid size of ``forward`` (contexts evenly spaced on ``[-1, 1]``).
        spread: initial diversity: 1 draws every candidate independently; below 1, near one shared
            random start (candidates then split as training sharpens their assignment).
        max_stretch: ``|s_k|`` at most this (< 1, so that ``1 + s_k c > 0``).
        max_shift: ``|t_k|`` at most this (``t_k = max_shift tanh(raw / max_shift)``); ``None``:
            unbounded. A bounded shift keeps a candidate from reading two unlike regions of its
            table at two contexts (say a corner at one, a straight line past the corner at another).
        init: ``"random"``: each table starts as independent values per knot (times 0.3);
            ``"identity"``: as the line ``h(u) = u`` plus a smooth random curve (8 random values
            times 0.3, interpolated over the knots), so that a candidate reading another's output
            (the chain ``g(f(x))``) starts with a gradient that is not noise.
    """

    def __init__(
        self,
        *,
        count: int,
        knots: int = 96,
        span: float = 9.0,
        contexts: int = 15,
        spread: float = 1.0,
        max_stretch: float = MAX_SLOPE_CHANGE,
        max_shift: float | None = None,
        init: str = "random",
    ) -> None:
        check_sizes(count=count, knots=knots, contexts=contexts)
        if init not in INITS:
            raise ValueError(f"init={init}: expected one of {', '.join(INITS)}")
        if not 0.0 <= max_stretch < 1.0:
            raise ValueError(f"max_stretch={max_stretch}: must be in [0, 1)")
        if max_shift is not None and not 0.0 < max_shift <= span:
            raise ValueError(f"max_shift={max_shift}: must be in (0, span={span}]")
        if knots < 2:
            raise ValueError(f"knots={knots}: must be >= 2")
        if not 0.0 < span <= 1e4:
            raise ValueError(f"span={span}: must be in (0, 1e4]")
        if not 0.0 <= spread <= 1.0:
            raise ValueError(f"spread={spread}: must be in [0, 1]")
        super().__init__(
            in_space=Space("vec", 1),
            out_space=Space("vec", count * contexts),
            count=count,
            knots=knots,
            span=span,
            contexts=contexts,
            spread=spread,
            max_stretch=max_stretch,
            max_shift=max_shift,
            init=init,
        )

        def draw(*shape: int) -> torch.Tensor:
            shared = torch.randn(1, *shape[1:]).expand(shape)
            return (1 - spread) * shared + spread * torch.randn(shape)

        if init == "random":
            table = draw(count, knots) * 0.3
        else:  # the line u at the knots, plus a smooth curve through 8 random values
            coarse = draw(count, 8) * 0.3
            smooth = nn.functional.interpolate(coarse[:, None], size=knots, mode="linear",
                                               align_corners=True)[:, 0]  # fmt: skip
            table = torch.linspace(-span, span, knots) + smooth
        self.table = nn.Parameter(table)
        self.slope = nn.Parameter(draw(count) * 0.12)
        self.shift = nn.Parameter(draw(count) * 0.6)
        self.span, self.contexts = float(span), int(contexts)
        self.max_stretch, self.max_shift = float(max_stretch), max_shift

    @property
    def count(self) -> int:
        return self.table.shape[0]

    def stretch(self) -> torch.Tensor:
        """``(count,)``: each candidate's ``s_k``, within ``max_stretch``."""
        return self.slope.clamp(-self.max_stretch, self.max_stretch)

    def offset(self) -> torch.Tensor:
        """``(count,)``: each candidate's ``t_k``, within ``max_shift``."""
        if self.max_shift is None:
            return self.shift
        return self.max_shift * torch.tanh(self.shift / self.max_shift)

    @property
    def width(self) -> float:
        """The distance between neighbouring knots."""
        return 2 * self.span / (self.table.shape[1] - 1)

    def grid(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The module's own context grid: ``contexts`` points evenly on ``[-1, 1]``."""
        return torch.linspace(-1.0, 1.0, self.contexts, dtype=dtype, device=self.table.device)

    def _read(self, u: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The tables of ``rows`` (broadcast with ``u``) at ``u``, linearly interpolated."""
        m = self.table.shape[1]
        pos = ((u + self.span) / self.width).clamp(0.0, m - 1.0)
        i = pos.detach().floor().clamp(max=m - 2).long()
        frac = pos - i
        flat = self.table.reshape(-1)
        i = i + rows * m
        low = flat[i]
        return low + frac * (flat[i + 1] - low)

    def on_grid(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """Every candidate at every context of ``grid`` (G,): ``x`` (...) -> (count, G, ...)."""
        ones = [1] * x.dim()
        s = self.stretch().view(-1, 1, *ones)
        c = grid.view(1, -1, *ones)
        u = (1 + s * c) * x + self.offset().view(-1, 1, *ones) * c
        rows = torch.arange(self.count, device=x.device).view(-1, 1, *ones)
        return self._read(u, rows)

    def read_at(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Every candidate at its own contexts: ``c`` ``(count, *B)``, ``x`` broadcastable to
        ``(*B, N)`` -> ``(count, *B, N)``."""
        ones = [1] * (c.dim() - 1)
        s = self.stretch().view(-1, *ones, 1)
        t = self.offset().view(-1, *ones, 1)
        c = c[..., None].to(x.dtype)
        rows = torch.arange(self.count, device=x.device).view(-1, *ones, 1)
        return self._read((1 + s * c) * x + t * c, rows)

    def read_rows(self, x: torch.Tensor, k: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Candidate ``k[i]`` at its contexts ``c[i]``: ``k`` ``(P,)``, ``c`` ``(P, *B)``, ``x``
        broadcastable to ``(*B, N)`` -> ``(P, *B, N)`` (:meth:`read_at` for any candidates, each
        as often as it is listed)."""
        ones = [1] * (c.dim() - 1)
        s = self.stretch()[k].view(-1, *ones, 1)
        t = self.offset()[k].view(-1, *ones, 1)
        c = c[..., None].to(x.dtype)
        return self._read((1 + s * c) * x + t * c, k.view(-1, *ones, 1))

    def chosen(self, x: torch.Tensor, k: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Candidate ``k[t]`` at context ``c[t]`` on task ``t``'s inputs: ``x`` (T, N) -> (T, N)."""
        s = self.stretch()[k, None]
        c = c[:, None].to(x.dtype)
        return self._read((1 + s * c) * x + self.offset()[k, None] * c, k[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1) -> (B, count * contexts)``: candidate-major, at the module's own grid."""
        return self.on_grid(x[:, 0], self.grid(x.dtype)).flatten(0, 1).T

    def as_relu_block(self, k: int, c: float) -> MLPBlock:
        """Candidate ``k`` at context ``c`` as an equal ``MLPBlock`` 1 -> [knots] -> 1 (ReLU).

        With knots ``z_j`` and slopes ``d_j`` between them, the clamped interpolation is
        ``h(u) = h_0 + sum_j (d_j - d_{j-1}) relu(u - z_j)`` (``d_{-1} = d_{m-1} = 0``), and ``u``
        is affine in ``x`` with a positive slope, so each hidden unit is ``relu(a x + b_j)``."""
        with torch.no_grad():
            s = float(self.stretch()[k])
            t = float(self.offset()[k])
            table = self.table[k].detach()
            d = (table[1:] - table[:-1]) / self.width
            m = table.shape[0]
            knots = -self.span + self.width * torch.arange(m, dtype=table.dtype)
            d = torch.cat([d.new_zeros(1), d, d.new_zeros(1)])
            block = MLPBlock(
                in_features=1,
                hidden=[self.table.shape[1]],
                out_features=1,
                activation="relu",
                activate_output=False,
            ).to(table.dtype)
            first, last = block.layers[0], block.layers[2]
            first.weight.fill_(1 + s * c)
            first.bias.copy_(t * c - knots)
            last.weight.copy_((d[1:] - d[:-1])[None])
            last.bias.fill_(float(table[0]))
        return block
