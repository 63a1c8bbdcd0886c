"""What a task family is: a seeded sampler of meta-batches of support/query sets."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import torch

from metacompose.modules.space import Space

SPLITS = ("train", "val", "test")


@dataclass
class TaskBatch:
    """A meta-batch of T tasks, each with K support and Q query examples.

    Attributes:
        support_x: ``(T, K, *in_shape)`` inputs of the support sets.
        support_y: ``(T, K, out_dim)`` float targets (regression) or ``(T, K)`` int64 labels.
        query_x: ``(T, Q, *in_shape)``.
        query_y: ``(T, Q, out_dim)`` or ``(T, Q)``.
        descriptor: optional task descriptor, ``(T, D)`` float or ``(T,)`` int64 (a categorical id).
        info: per-task ground truth the family exposes (e.g. ``"amplitude"``: ``(T,)``), never given
            to the learner; used for scoring and inspection.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    descriptor: torch.Tensor | None = None
    info: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = self.support_x.shape[0]
        for f in ("support_y", "query_x", "query_y"):
            if getattr(self, f).shape[0] != t:
                raise ValueError(
                    f"TaskBatch.{f} has {getattr(self, f).shape[0]} tasks, expected {t}"
                )

    @property
    def num_tasks(self) -> int:
        return self.support_x.shape[0]

    def __len__(self) -> int:
        return self.num_tasks

    def _map(self, fn) -> TaskBatch:
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                kw[f.name] = fn(v)
            elif isinstance(v, dict):
                kw[f.name] = {k: fn(t) for k, t in v.items()}
            else:
                kw[f.name] = v
        return TaskBatch(**kw)

    def _all_on(self, device: torch.device) -> bool:
        tensors = [getattr(self, f.name) for f in fields(self)]
        tensors = [t for t in tensors if isinstance(t, torch.Tensor)] + list(self.info.values())
        return all(t.device == device for t in tensors)

    def to(
        self, device: torch.device | str, dtype: torch.dtype | None = None, **kwargs
    ) -> TaskBatch:
        """Move to ``device``; ``dtype`` casts floating tensors only (labels stay int64). Where
        nothing moves (no ``dtype``, no keyword arguments, every tensor on ``device``) the batch
        itself is returned, not a copy.

        Extra keyword arguments (e.g. ``non_blocking``) are passed to ``Tensor.to``.
        """

        if dtype is None and not kwargs and self._all_on(torch.device(device)):
            return self  # nothing to move (the training loop's every batch on CPU): the same object

        def move(t: torch.Tensor) -> torch.Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype, **kwargs)
            return t.to(device=device, **kwargs)

        return self._map(move)

    def select(self, index: torch.Tensor | slice) -> TaskBatch:
        """The tasks ``index`` (a slice or an index tensor over the task dimension)."""
        return self._map(lambda t: t[index])

    def slice(self, start: int, stop: int) -> TaskBatch:
        """Tasks ``start:stop`` (used to split a meta-batch across ranks or vmap chunks)."""
        return self._map(lambda t: t[start:stop])

    @staticmethod
    def cat(batches: list[TaskBatch]) -> TaskBatch:
        first = batches[0]
        for b in batches[1:]:
            if (b.descriptor is None) != (
                first.descriptor is None
            ) or b.info.keys() != first.info.keys():
                raise ValueError(
                    "TaskBatch.cat: batches differ in their descriptor or info keys "
                    f"({first.descriptor is not None}, {sorted(first.info)} vs "
                    f"{b.descriptor is not None}, {sorted(b.info)})"
                )
        kw = {}
        for f in fields(first):
            v = getattr(first, f.name)
            if isinstance(v, torch.Tensor):
                kw[f.name] = torch.cat([getattr(b, f.name) for b in batches])
            elif isinstance(v, dict):
                kw[f.name] = {k: torch.cat([b.info[k] for b in batches]) for k in v}
            else:
                kw[f.name] = None
        return TaskBatch(**kw)


@runtime_checkable
class TaskFamily(Protocol):
    """A distribution over tasks. Implementations are small classes with typed keyword arguments.

    Attributes:
        name: short identifier written into eval reports.
        metric: ``"mse"`` for regression, ``"accuracy"`` for classification.
        in_space: the space of one input example.
        out_dim: target dimension (regression) or number of classes (classification).
    """

    name: str
    metric: str
    in_space: Space
    out_dim: int

    def sample(
        self, n_tasks: int, *, shots: int, query: int, generator: torch.Generator, split: str
    ) -> TaskBatch:
        """Draw ``n_tasks`` tasks of the ``split`` ("train", "val" or "test") with ``generator``."""
        ...


@runtime_checkable
class HasInputRange(Protocol):
    """A family of scalar inputs, each drawn from the interval ``x_range`` (the sinusoid and the
    compositional families): what plots and bank checks sweep."""

    x_range: tuple[float, float]


@runtime_checkable
class HasSubsets(Protocol):
    """A family that names subsets of its meta-test tasks (``--subset``: e.g. seen and held-out
    pairs), drawn with ``sample(..., subset=name)``."""

    @property
    def subsets(self) -> tuple[str, ...]: ...


@runtime_checkable
class HasFactors(Protocol):
    """A family that exposes each task's true structure for scoring: factor -> the names of its
    values; ``batch.info[factor]`` holds each task's value index."""

    @property
    def factors(self) -> dict[str, tuple[str, ...]]: ...


@runtime_checkable
class HasStructure(Protocol):
    """A family whose tasks share one compositional structure (the chain or the sum):
    ``structure.interchangeable`` says whether swapping its two slots gives the same task."""

    structure: Any


@runtime_checkable
class HasGroups(Protocol):
    """A grouped real-data family: every task is drawn from one group (``group_keys[i]`` names
    group ``i``; ``batch.info["group"]`` holds each task's), the independent unit of its
    statistics."""

    group_keys: Any


@runtime_checkable
class HasClasses(Protocol):
    """A classification family over a global pool of ``num_classes`` classes
    (``batch.info["classes"]`` indexes it): what pooled pre-training classifies."""

    num_classes: int


def interchangeable_slots(family: object) -> bool:
    """Whether the family's structure (:class:`HasStructure`) scores its slots as a set."""
    return isinstance(family, HasStructure) and bool(family.structure.interchangeable)


def subsets_of(family: object) -> tuple[str, ...]:
    """The family's named subsets (:class:`HasSubsets`; ``()``: it declares none)."""
    return tuple(family.subsets) if isinstance(family, HasSubsets) else ()


def factors_of(family: object) -> dict[str, tuple[str, ...]]:
    """The family's true factors (:class:`HasFactors`; ``{}``: it exposes none)."""
    return dict(family.factors) if isinstance(family, HasFactors) else {}


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from ``seed`` and any labels (split name, rank, ...), stable across runs.

    Streams for different ``parts`` are statistically independent, which is how meta-train,
    meta-validation and meta-test (and each DDP rank) get disjoint task streams.
    """
    text = "/".join([str(int(seed)), *(str(p) for p in parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


# Past this an interval bound of a task family (an amplitude, an input range) is a likely typo:
# float32 targets and their squared errors overflow to inf well before 1e300.
INTERVAL_LIMIT = 1e6


def check_interval(name: str, value: tuple[float, float], *, empty: bool = True) -> tuple:
    """``value`` as a ``(lo, hi)`` pair with ``lo <= hi`` (``lo < hi`` when ``empty`` is False: an
    input range every point of which is the same) inside ``[-INTERVAL_LIMIT, INTERVAL_LIMIT]``;
    one-line ``ValueError`` naming ``name``."""
    lo, hi = value
    if lo > hi or (not empty and lo == hi):
        raise ValueError(
            f"{name}={[lo, hi]}: expected [lo, hi] with lo {'<=' if empty else '<'} hi"
        )
    if max(abs(lo), abs(hi)) > INTERVAL_LIMIT:
        raise ValueError(
            f"{name}={[lo, hi]}: must lie within [-{INTERVAL_LIMIT:g}, {INTERVAL_LIMIT:g}]"
        )
    return (lo, hi)
