"""Compositional regression: two primitives per task, composed by a structure.

The chain ``y = A g(f(x))`` (an inner primitive f, an outer primitive g) or the sum
``y = a f(x) + b g(x)`` (:mod:`metacompose.tasks.structures`), with primitives chosen by name from
the registries of :mod:`metacompose.tasks.primitives`, each with its per-task continuous
parameter. A fixed set of (f, g) combinations is held out of meta-training entirely, so that
meta-test can score generalisation to *unseen combinations* of seen parts (``subset="held_out"``).
Every task's true primitives are exposed in ``TaskBatch.info`` (``"f"``, ``"g"``: int64 ids into
:attr:`CompositionalFamily.factors`).

Primitive sets (``preset``): ``"original"`` (the default, kept so that earlier runs stay
reproducible), ``"identifiable"`` and ``"identifiable_wavy"``. In the original set ``ramp``
(inner) and ``linear`` (outer) are the identity up to a per-task scale, and some pairs fit each
other almost exactly (``step∘linear`` by ``step∘relu``: 0.6% of the variance left), so the
factorisation (f, g) cannot be recovered from data. The identifiable sets have no identity-like
primitive. Under the per-task parameter and a per-task output scale/shift, the best fit of any
distinct pair leaves, for every parameter value, at least 7% of a target's variance unexplained
in ``"identifiable"`` (worst: ``vee∘square`` vs ``vee∘cos``; median over pairs 75%) and at least
39% in ``"identifiable_wavy"`` (outer primitives with one to two full periods on [-1, 1], which
makes its tasks much harder to fit from 10 shots). See :func:`confusability`; every chosen set is
checked on construction (``check``: :class:`ConfusabilityCheck`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import torch

from metacompose.modules.space import Space
from metacompose.tasks.base import TaskBatch, check_interval, check_split
from metacompose.tasks.confusability import confusability
from metacompose.tasks.held_out import held_out_indices
from metacompose.tasks.primitives import INNER, OUTER, Primitive
from metacompose.tasks.structures import STRUCTURES, build_structure

Tensor = torch.Tensor
log = logging.getLogger(__name__)

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

# The solo tasks' stand-in for the missing primitive (``"identity"`` in ``factors``).
IDENTITY = Primitive(lambda x: x)
CONFUSABLE = ("warn", "refuse")


@dataclass(frozen=True)
class ConfusabilityCheck:
    """The check a family runs on construction (YAML: ``task.args.check: {min_distinct: ...}``).

    Args:
        min_distinct: every (f, g) pair's tasks must keep at least this fraction of their variance
            unexplained by the best fit of any other pair (:func:`confusability`); 0 turns the
            check off.
        on_confusable: ``"warn"`` (one log line naming the worst two pairs) or ``"refuse"``
            (``ValueError``) when the chosen set fails the check.
        points: evenly spaced inputs of the check (e.g. the support size K, to ask what K evenly
            spaced shots can tell apart; the default is dense).
    """

    min_distinct: float = 0.01
    on_confusable: str = "warn"
    points: int = 121

    def __post_init__(self) -> None:
        if self.on_confusable not in CONFUSABLE:
            raise ValueError(
                f"on_confusable must be one of {CONFUSABLE}, got {self.on_confusable!r}"
            )


def as_check(check: ConfusabilityCheck | dict[str, Any] | None) -> ConfusabilityCheck:
    """``check`` as a :class:`ConfusabilityCheck` (a mapping from YAML, or ``None``: the default)."""
    if check is None or isinstance(check, ConfusabilityCheck):
        return check or ConfusabilityCheck()
    known = {f.name for f in fields(ConfusabilityCheck)}
    unknown = sorted(set(check) - known)
    if unknown:
        raise ValueError(f"check: unknown key {unknown[0]!r}; known: {sorted(known)}")
    return ConfusabilityCheck(**check)


__all__ = [
    "INNER",
    "OUTER",
    "PRESETS",
    "CompositionalFamily",
    "ConfusabilityCheck",
    "confusability",
]


class CompositionalFamily:
    """Tasks ``y = A g(f(x))`` (``structure: chain``) or ``y = a f(x) + b g(x)`` (``sum``),
    ``x ~ U[x_range]``, every amplitude ``~ U[amplitude]``, every primitive's parameter
    ``~ U[param_range]``.

    Splits "train" and "val" draw only *seen* (f, g) combinations; "test" draws seen combinations by
    default, and the held-out ones or all of them with ``sample(..., subset="held_out" | "all")``
    (:attr:`subsets`).

    Args:
        preset: ``"original"``, ``"identifiable"`` or ``"identifiable_wavy"`` (see the module
            docstring): the default ``inner``, ``outer`` and ``held_out`` of :data:`PRESETS`.
        structure: ``"chain"`` (f from ``INNER``, g from ``OUTER``) or ``"sum"`` (both from
            ``INNER``; ``inner`` lists the first term's primitives, ``outer`` the second's).
        inner: names of the slot-f primitives; default: the preset's.
        outer: names of the slot-g primitives; default: the preset's.
        held_out: ``[f, g]`` pairs never drawn in meta-training; default: the preset's.
        amplitude: range of the output amplitude ``A`` (of each term's, for the sum).
        x_range: input range.
        param_range: range of every primitive's parameter ``p`` (within ``[0, 1]``); a narrower
            range makes each primitive closer to one fixed shape.
        descriptor: ``"none"``; ``"onehot"`` to give the learner the one-hot of (f, g) as a
            ``(T, len(inner) + len(outer))`` task descriptor (context-aware adaptation); or
            ``"input"`` to append that one-hot to every input point instead (``x`` becomes
            ``(1 + len(inner) + len(outer))``-dim: how a plain network gets the same context).
        solo: (chain only) probability that a meta-train task shows its inner primitive alone,
            ``y = f(x)`` (amplitude 1, no outer primitive): such tasks give the inner stage's
            output a fixed meaning (it *is* ``f(x)``) whatever outer primitive it is later
            composed with. Its ``g`` is the extra outer id ``len(outer)`` (named ``"identity"``
            in :attr:`factors`, and a one-hot column of its own in the descriptor). Meta-val and
            meta-test never draw solo tasks.
        solo_outer: (chain only) probability that a meta-train task shows its outer primitive
            alone on the unit interval, ``y = A g(u)`` with the input ``u = x`` rescaled from
            ``x_range`` to ``[-1, 1]`` (the range every inner primitive writes): such tasks give
            the outer stage's *input* a fixed meaning (the value ``u``) whatever inner primitive
            later writes it. Its ``f`` is the extra inner id ``len(inner)`` (``"identity"``, with
            a descriptor column of its own; its ``info["param"]`` is drawn but unused). Drawn
            exclusively of ``solo``; meta-val and meta-test never draw them.
        check: the confusability check on construction (:class:`ConfusabilityCheck`, or its
            fields as a mapping; default: at least 1% left unexplained, warn otherwise).
    """

    name = "compositional"
    metric = "mse"
    in_space = Space("vec", 1)
    out_dim = 1

    def __init__(
        self,
        *,
        preset: str = "original",
        structure: str = "chain",
        inner: list[str] | tuple[str, ...] | None = None,
        outer: list[str] | tuple[str, ...] | None = None,
        held_out: list[list[str]] | tuple[tuple[str, str], ...] | None = None,
        amplitude: tuple[float, float] = (0.5, 2.0),
        x_range: tuple[float, float] = (-3.0, 3.0),
        param_range: tuple[float, float] = (0.0, 1.0),
        descriptor: str = "none",
        solo: float = 0.0,
        solo_outer: float = 0.0,
        check: ConfusabilityCheck | dict[str, Any] | None = None,
    ) -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
        if structure not in STRUCTURES:
            raise ValueError(f"unknown structure {structure!r}; known: {sorted(STRUCTURES)}")
        self.structure = build_structure(structure)
        inner = PRESETS[preset][0] if inner is None else inner
        outer = PRESETS[preset][1] if outer is None else outer
        held_out = PRESETS[preset][2] if held_out is None else held_out
        f_table, g_table = self.structure.registries
        for name, table, kind in [(n, f_table, "inner") for n in inner] + [
            (n, g_table, "outer") for n in outer
        ]:
            if name not in table:
                raise ValueError(f"{kind}: unknown primitive {name!r}; known: {sorted(table)}")
        for kind, names in (("inner", inner), ("outer", outer)):
            twice = sorted({n for n in names if list(names).count(n) > 1})
            if twice:
                raise ValueError(f"{kind} names {', '.join(twice)} more than once: {list(names)}")
        if not 0.0 <= param_range[0] <= param_range[1] <= 1.0:
            raise ValueError(
                f"param_range must satisfy 0 <= lo <= hi <= 1, got {list(param_range)}"
            )
        if descriptor not in ("none", "onehot", "input"):
            raise ValueError(f"descriptor must be 'none', 'onehot' or 'input', got {descriptor!r}")
        self.inner = tuple(inner)
        self.outer = tuple(outer)
        held = held_out_indices(held_out, self.inner, self.outer)
        all_pairs = [(i, j) for i in range(len(self.inner)) for j in range(len(self.outer))]
        self.held_out = tuple(p for p in all_pairs if p in held)
        self.seen = tuple(p for p in all_pairs if p not in held)
        if not self.seen:
            raise ValueError("held_out leaves no (f, g) combination for meta-training")
        self.amplitude = check_interval("amplitude", amplitude)
        if max(abs(a) for a in self.amplitude) == 0:
            raise ValueError(f"amplitude={list(amplitude)}: every target would be 0")
        self.x_range = check_interval("x_range", x_range, empty=False)
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
        if (solo or solo_outer) and structure != "chain":
            raise ValueError(f"solo and solo_outer are for structure 'chain', not {structure!r}")
        self.descriptor = descriptor
        if descriptor == "input":
            self.in_space = Space("vec", 1 + len(self.inner_ids) + len(self.outer_ids))
        self._f = [f_table[n] for n in self.inner] + [IDENTITY]
        self._g = [g_table[n] for n in self.outer] + [IDENTITY]
        self._g_param = any(g.param is not None for g in self._g)
        check = as_check(check)
        if check.min_distinct > 0:
            self._check(check.min_distinct, check.on_confusable, check.points)

    def _check(self, min_distinct: float, on_confusable: str, points: int) -> None:
        left, a, b = worst_pair(
            self.structure.name, self.inner, self.outer, self.x_range, points, self.amplitude
        )
        if left >= min_distinct:
            return
        j = self.structure.join
        msg = (
            f"(f, g) pairs {a[0]}{j}{a[1]} and {b[0]}{j}{b[1]} are confusable: the best fit of the "
            f"second leaves {left:.2%} of a task of the first unexplained on {points} points of "
            f"{list(self.x_range)} (min_distinct {min_distinct:.2%})"
        )
        if on_confusable == "refuse":
            raise ValueError(f"{msg}; choose other primitives or held-out pairs (or set "
                             "check.on_confusable: warn to train on it anyway)")  # fmt: skip
        log.warning("compositional: %s", msg)

    @property
    def subsets(self) -> tuple[str, ...]:
        """The (f, g) combination sets ``sample(..., subset=...)`` can draw from (split "test")."""
        return ("seen", "held_out", "all") if self.held_out else ("seen", "all")

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
        """Categorical ground-truth keys of ``TaskBatch.info`` and the names of their values, in
        slot order (f, then g)."""
        return {"f": self.inner_ids, "g": self.outer_ids}

    def sample(
        self,
        n_tasks: int,
        *,
        shots: int,
        query: int,
        generator: torch.Generator,
        split: str = "train",
        subset: str = "seen",
    ) -> TaskBatch:
        """Draw ``n_tasks`` tasks; ``subset`` picks seen, held-out or all (f, g) combinations.

        ``info`` holds ``f``, ``g`` (int64 ids), ``held_out`` (int64 0/1), ``amplitude`` and
        ``param`` (f's parameter in ``param_range``), each ``(T,)``; with a parametric g also
        ``param_g``, and for the sum ``amplitude_g`` (the second term's amplitude).
        """
        check_split(split)
        if subset not in ("seen", "held_out", "all"):
            raise ValueError(f"subset must be one of {self.subsets}, got {subset!r}")
        if subset != "seen" and split != "test":
            raise ValueError(
                f"held-out combinations are only drawn for split 'test', not {split!r}"
            )
        pool = {"seen": self.seen, "held_out": self.held_out, "all": self.seen + self.held_out}
        pairs = torch.tensor(pool[subset], dtype=torch.int64)
        if len(pairs) == 0:
            raise ValueError("this family has no held-out combinations")
        g = generator
        pick = pairs[torch.randint(len(pairs), (n_tasks,), generator=g)]
        f_id, g_id = pick[:, 0], pick[:, 1]
        lo, hi = self.param_range
        p = lo + (hi - lo) * torch.rand((n_tasks, 1, 1), generator=g)
        q = lo + (hi - lo) * torch.rand((n_tasks, 1, 1), generator=g) if self._g_param else None
        lo, hi = self.amplitude
        amp = lo + (hi - lo) * torch.rand((n_tasks, self.structure.num_terms, 1, 1), generator=g)
        lo, hi = self.x_range
        x = lo + (hi - lo) * torch.rand((n_tasks, shots + query, 1), generator=g)
        held = torch.tensor([(int(a), int(b)) in self.held_out for a, b in pick], dtype=torch.int64)
        if self.solo > 0 and split == "train":
            solo = torch.rand(n_tasks, generator=g) < self.solo
            g_id = torch.where(solo, len(self.outer), g_id)
            amp = torch.where(solo.view(-1, 1, 1, 1), 1.0, amp)
        if self.solo_outer > 0 and split == "train":
            # Its own draw, so that turning it on leaves the inner-solo tasks of a seed as they were.
            r = torch.rand(n_tasks, generator=g)
            alone = (r < self.solo_outer / (1.0 - self.solo)) & (g_id < len(self.outer))
            f_id = torch.where(alone, len(self.inner), f_id)
            lo, hi = self.x_range
            unit = (2.0 * x - lo - hi) / (hi - lo)
            x = torch.where(alone.view(-1, 1, 1), unit, x)
        y = self._targets(f_id, g_id, x, p, q, amp)
        x, descriptor = self._with_descriptor(f_id, g_id, x)
        info = {"f": f_id, "g": g_id, "held_out": held, "amplitude": amp[:, 0].reshape(-1)}
        info["param"] = p.view(-1)
        if q is not None:
            info["param_g"] = q.view(-1)
        if self.structure.num_terms > 1:
            info["amplitude_g"] = amp[:, 1].reshape(-1)
        return TaskBatch(
            support_x=x[:, :shots],
            support_y=y[:, :shots],
            query_x=x[:, shots:],
            query_y=y[:, shots:],
            descriptor=descriptor,
            info=info,
        )

    def _targets(self, f_id, g_id, x, p, q, amp) -> torch.Tensor:
        """``y`` of every task: its structure's terms of (f, g) at ``x``, weighted by ``amp``."""
        y = torch.empty_like(x)
        for t in range(len(f_id)):
            fp, gp = self._f[int(f_id[t])], self._g[int(g_id[t])]
            terms = self.structure.terms(fp, gp, x[t], p[t], None if q is None else q[t])
            y[t] = amp[t, 0] * terms[0]
            for k in range(1, len(terms)):
                y[t] = y[t] + amp[t, k] * terms[k]
        return y

    def _with_descriptor(self, f_id, g_id, x) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(x, descriptor)``: the (f, g) one-hot descriptor as ``self.descriptor`` says (none,
        a separate tensor, or appended to every input)."""
        if self.descriptor == "none":
            return x, None
        descriptor = torch.cat(
            [
                torch.nn.functional.one_hot(f_id, len(self.inner_ids)),
                torch.nn.functional.one_hot(g_id, len(self.outer_ids)),
            ],
            dim=1,
        ).float()
        if self.descriptor == "input":
            return torch.cat([x, descriptor[:, None, :].expand(-1, x.shape[1], -1)], dim=-1), None
        return x, descriptor


@lru_cache(maxsize=64)
def worst_pair(
    structure: str,
    inner: tuple[str, ...],
    outer: tuple[str, ...],
    x_range: tuple[float, float],
    points: int,
    amplitude: tuple[float, float],
) -> tuple[float, tuple[str, str], tuple[str, str]]:
    """``(left, a, b)``: the smallest :func:`confusability` of two distinct pairs of the set, and
    the pairs (``a``'s tasks, fitted by ``b``). Parameter grids: 21 values with one parametric
    slot, 9 per slot with two."""
    st = build_structure(structure)
    two = any(st.registries[1][g].param is not None for g in outer)
    pairs, left = confusability(
        inner, outer, structure=structure, x_range=x_range, points=points,
        params=9 if two else 21, amplitude=amplitude,
    )  # fmt: skip
    if len(pairs) < 2:
        return 1.0, pairs[0], pairs[0]
    left = left + torch.eye(len(pairs)) * 2.0
    k = int(left.argmin())
    a, b = divmod(k, len(pairs))
    return max(0.0, float(left.flatten()[k])), pairs[a], pairs[b]
