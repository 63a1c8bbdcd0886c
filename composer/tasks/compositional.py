"""Compositional regression: y = A g(f(x)) with an inner primitive f and an outer primitive g.

Each primitive has per-task continuous parameters. A fixed set of (f, g) combinations is held out of
meta-training entirely, so that meta-test can score generalisation to *unseen combinations* of
seen parts. Every task's true primitives are exposed in ``TaskBatch.info`` (``"f"``, ``"g"``: int64
ids into :attr:`CompositionalFamily.inner` / :attr:`CompositionalFamily.outer`).

Primitive sets (``preset``): ``"original"`` (the default, kept so that earlier runs stay
reproducible), ``"identifiable"`` and ``"identifiable_wavy"``. In the original set ``ramp``
(inner) and ``linear`` (outer) are the identity up to a per-task scale, and some pairs fit each
other almost exactly (``step∘linear`` by ``step∘relu``: 0.6% of the variance left), so the
factorisation (f, g) cannot be recovered from data. The identifiable sets have no identity-like
primitive. Under the per-task parameter and a per-task output scale/shift, the best fit of any
distinct pair leaves, for every parameter value, at least 7% of a target's variance unexplained
in ``"identifiable"`` (worst: ``vee∘square`` vs ``vee∘cos``; median over pairs 75%) and at least
39% in ``"identifiable_wavy"`` (outer primitives with one to two full periods on [-1, 1], which
makes its tasks much harder to fit from 10 shots). See :func:`confusability`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from metacompose.modules.space import Space
from metacompose.tasks.base import TaskBatch, check_split

Tensor = torch.Tensor

# Inner primitives: x -> u (values roughly in [-1.4, 1.4]). Each gets a (T, 1, 1) parameter tensor
# ``p`` uniform in the family's ``param_range`` (default [0, 1)) that it maps to its own parameter.
INNER: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "sine": lambda x, p: torch.sin((2.0 + p) * x + math.pi * p),  # frequency 2-3, phase 0-pi
    "ramp": lambda x, p: (0.25 + 0.2 * p) * x,  # slope 0.25-0.45
    "bump": lambda x, p: 2.0 * torch.exp(-((x - (2 * p - 1)) ** 2)) - 1.0,  # centre -1..1
    "step": lambda x, p: torch.tanh(3.0 * (x - (2 * p - 1))),  # edge at -1..1
    "vee": lambda x, p: torch.abs(x - (2 * p - 1)) / 2.0 - 1.0,  # V with its corner at -1..1
}

# Outer primitives: u -> y before the amplitude.
OUTER: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda u: u,
    "square": lambda u: u**2,
    "relu": lambda u: torch.relu(u),
    "cos": lambda u: torch.cos(math.pi * u),
    "abs": lambda u: torch.abs(u),
    "sin_pi": lambda u: torch.sin(math.pi * u),
    "cos_2pi": lambda u: torch.cos(2.0 * math.pi * u),
    "sin_2pi": lambda u: torch.sin(2.0 * math.pi * u),
    "squash": lambda u: torch.tanh(3.0 * u),
}

# One held-out partner per inner and per outer primitive (a permutation), so that every primitive
# is still seen in meta-training with three partners.
DEFAULT_HELD_OUT = (("sine", "square"), ("ramp", "relu"), ("bump", "cos"), ("step", "linear"))

# preset -> (inner, outer, held_out); each held-out set is a permutation as above.
PRESETS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "original": (
        ("sine", "ramp", "bump", "step"),
        ("linear", "square", "relu", "cos"),
        DEFAULT_HELD_OUT,
    ),
    "identifiable": (
        ("sine", "bump", "step", "vee"),
        ("square", "cos", "sin_pi", "squash"),
        (("sine", "squash"), ("bump", "square"), ("step", "sin_pi"), ("vee", "cos")),
    ),
    "identifiable_wavy": (
        ("sine", "bump", "step", "vee"),
        ("abs", "sin_pi", "cos_2pi", "sin_2pi"),
        (("sine", "abs"), ("bump", "sin_pi"), ("step", "cos_2pi"), ("vee", "sin_2pi")),
    ),
}

COMBOS = ("seen", "held_out", "all")


class CompositionalFamily:
    """Tasks ``y = A * g(f(x))``, ``x ~ U[x_range]``, ``A ~ U[amplitude]``.

    Splits "train" and "val" draw only *seen* (f, g) combinations; "test" draws seen combinations by
    default and the held-out ones with ``sample(..., combos="held_out")``.

    Args:
        preset: ``"original"`` or ``"identifiable"`` (see the module docstring): the default
            ``inner``, ``outer`` and ``held_out`` of :data:`PRESETS`.
        inner: names of the inner primitives (keys of ``INNER``); default: the preset's.
        outer: names of the outer primitives (keys of ``OUTER``); default: the preset's.
        held_out: ``[f, g]`` pairs never drawn in meta-training; default: the preset's.
        amplitude: range of the output amplitude ``A``.
        x_range: input range.
        param_range: range of the inner primitive's parameter ``p`` (within ``[0, 1]``); a
            narrower range makes each primitive closer to one fixed shape.
        descriptor: ``"none"``; ``"onehot"`` to give the learner the one-hot of (f, g) as a
            ``(T, len(inner) + len(outer))`` task descriptor (context-aware adaptation); or
            ``"input"`` to append that one-hot to every input point instead (``x`` becomes
            ``(1 + len(inner) + len(outer))``-dim: how a plain network gets the same context).
        solo: probability that a meta-train task shows its inner primitive alone, ``y = f(x)``
            (amplitude 1, no outer primitive): such tasks give the inner stage's output a fixed
            meaning (it *is* ``f(x)``) whatever outer primitive it is later composed with. Its
            ``g`` is the extra outer id ``len(outer)`` (named ``"identity"`` in :attr:`factors`,
            and a one-hot column of its own in the descriptor). Meta-val and meta-test never
            draw solo tasks.
        solo_outer: probability that a meta-train task shows its outer primitive alone on the
            unit interval, ``y = A g(u)`` with the input ``u = x`` rescaled from ``x_range`` to
            ``[-1, 1]`` (the range every inner primitive writes): such tasks give the outer
            stage's *input* a fixed meaning (the value ``u``) whatever inner primitive later
            writes it. Its ``f`` is the extra inner id ``len(inner)`` (``"identity"``, with a
            descriptor column of its own; its ``info["param"]`` is drawn but unused). Drawn
            exclusively of ``solo``; meta-val and meta-test never draw them.
    """

    name = "compositional"
    metric = "mse"
    in_space = Space("vec", 1)
    out_dim = 1

    def __init__(
        self,
        *,
        preset: str = "original",
        inner: list[str] | tuple[str, ...] | None = None,
        outer: list[str] | tuple[str, ...] | None = None,
        held_out: list[list[str]] | tuple[tuple[str, str], ...] | None = None,
        amplitude: tuple[float, float] = (0.5, 2.0),
        x_range: tuple[float, float] = (-3.0, 3.0),
        param_range: tuple[float, float] = (0.0, 1.0),
        descriptor: str = "none",
        solo: float = 0.0,
        solo_outer: float = 0.0,
    ) -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
        inner = PRESETS[preset][0] if inner is None else inner
        outer = PRESETS[preset][1] if outer is None else outer
        held_out = PRESETS[preset][2] if held_out is None else held_out
        for name, table, kind in [(n, INNER, "inner") for n in inner] + [
            (n, OUTER, "outer") for n in outer
        ]:
            if name not in table:
                raise ValueError(f"unknown {kind} primitive {name!r}; known: {sorted(table)}")
        if not 0.0 <= param_range[0] <= param_range[1] <= 1.0:
            raise ValueError(
                f"param_range must satisfy 0 <= lo <= hi <= 1, got {list(param_range)}"
            )
        if descriptor not in ("none", "onehot", "input"):
            raise ValueError(f"descriptor must be 'none', 'onehot' or 'input', got {descriptor!r}")
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
        if not 0.0 <= solo < 1.0:
            raise ValueError(f"solo must be a probability in [0, 1), got {solo}")
        self.solo = float(solo)
        if not 0.0 <= solo_outer < 1.0 or solo + solo_outer >= 1.0:
            raise ValueError(
                f"solo_outer must be a probability in [0, 1) with solo + solo_outer < 1, "
                f"got solo={solo}, solo_outer={solo_outer}"
            )
        self.solo_outer = float(solo_outer)
        self.descriptor = descriptor
        if descriptor == "input":
            self.in_space = Space("vec", 1 + len(self.inner_ids) + len(self.outer_ids))

    @property
    def inner_ids(self) -> tuple[str, ...]:
        """Names of the values of ``info["f"]``: the inner primitives, then ``"identity"`` when
        the family draws outer-solo tasks."""
        return self.inner + (("identity",) if self.solo_outer > 0 else ())

    @property
    def outer_ids(self) -> tuple[str, ...]:
        """Names of the values of ``info["g"]``: the outer primitives, then ``"identity"`` when
        the family draws solo tasks."""
        return self.outer + (("identity",) if self.solo > 0 else ())

    @property
    def factors(self) -> dict[str, tuple[str, ...]]:
        """Categorical ground-truth keys of ``TaskBatch.info`` and the names of their values."""
        return {"f": self.inner_ids, "g": self.outer_ids}

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
        held = torch.tensor([(int(a), int(b)) in self.held_out for a, b in pick], dtype=torch.int64)
        if self.solo > 0 and split == "train":
            solo = torch.rand(n_tasks, generator=g) < self.solo
            g_id = torch.where(solo, len(self.outer), g_id)
            amp = torch.where(solo.view(-1, 1, 1), 1.0, amp)
        if self.solo_outer > 0 and split == "train":
            # Its own draw, so that turning it on leaves the inner-solo tasks of a seed as they were.
            r = torch.rand(n_tasks, generator=g)
            alone = (r < self.solo_outer / (1.0 - self.solo)) & (g_id < len(self.outer))
            f_id = torch.where(alone, len(self.inner), f_id)
            lo, hi = self.x_range
            unit = (2.0 * x - lo - hi) / (hi - lo)
            x = torch.where(alone.view(-1, 1, 1), unit, x)
        y = torch.empty_like(x)
        for t in range(n_tasks):
            ft = int(f_id[t])
            u = INNER[self.inner[ft]](x[t], p[t]) if ft < len(self.inner) else x[t]
            gt = int(g_id[t])
            y[t] = amp[t] * (OUTER[self.outer[gt]](u) if gt < len(self.outer) else u)
        descriptor = None
        if self.descriptor != "none":
            descriptor = torch.cat(
                [
                    torch.nn.functional.one_hot(f_id, len(self.inner_ids)),
                    torch.nn.functional.one_hot(g_id, len(self.outer_ids)),
                ],
                dim=1,
            ).float()
        if self.descriptor == "input":
            x = torch.cat([x, descriptor[:, None, :].expand(-1, x.shape[1], -1)], dim=-1)
            descriptor = None
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


def confusability(
    inner: tuple[str, ...] | list[str],
    outer: tuple[str, ...] | list[str],
    *,
    x_range: tuple[float, float] = (-3.0, 3.0),
    points: int = 121,
    params: int = 21,
) -> tuple[list[tuple[str, str]], Tensor]:
    """How well each (f, g) pair is explained by another, over the per-task parameters.

    For pairs ``a`` and ``b`` and every inner parameter ``p`` of ``a`` (a grid of ``params``
    values in ``[0, 1]``), the target ``g_a(f_a(x; p))`` on ``points`` grid inputs is fitted by
    ``c0 + c1 * g_b(f_b(x; q))`` (least squares in ``c0, c1``: a per-task output shift/scale,
    which absorbs the amplitude) for the best ``q`` of the grid. The fraction of variance left,
    ``1 - corr^2``, is minimised over ``q`` and then over ``p`` (the worst case for ``a``).
    Computed in float64.

    Args:
        inner: inner primitive names.
        outer: outer primitive names.
        x_range: input interval of the grid.
        points: grid inputs.
        params: grid values of the inner parameter.

    Returns:
        ``(pairs, left)``: the ``P = len(inner) * len(outer)`` pairs in order, and ``(P, P)``
        fraction of variance of pair ``a`` (row) left by the best fit of pair ``b`` (column); the
        diagonal is 0.
    """
    x = torch.linspace(*x_range, points, dtype=torch.float64).view(1, -1)
    p = torch.linspace(0.0, 1.0, params, dtype=torch.float64).view(-1, 1)
    pairs = [(f, g) for f in inner for g in outer]
    y = torch.stack([OUTER[g](INNER[f](x, p)) for f, g in pairs])  # (P, params, points)
    y = y - y.mean(-1, keepdim=True)
    y = y / y.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    corr = torch.einsum("apn,bqn->abpq", y, y)
    left = (1.0 - corr**2).amin(dim=3).amin(dim=2)
    left.fill_diagonal_(0.0)
    return pairs, left
