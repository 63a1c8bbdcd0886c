"""What every meta-learner is to the rest of metacompose: the ``Learner`` protocol.

The Lightning module, evaluation, the report, ``inspect`` and ``verify`` accept any ``Learner``;
``MetaLearner`` (one graph, MAML family) and ``RoutedMetaLearner`` (a module pool composed per task)
implement it. A learner whose adapted state is a plain parameter dict of its graph can also be
adapted in sequence (catastrophic forgetting): :class:`ParameterAdapter`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from metacompose.algorithms.inner_loop import Params, StepSizes
from metacompose.graph import ModuleGraph
from metacompose.tasks.base import TaskBatch


@dataclass
class MetaStep:
    """What one meta-training step produced.

    Attributes:
        objective: the scalar whose gradient w.r.t. the learner's parameters is the meta-gradient
            (the mean query loss for MAML-family algorithms; a surrogate for Reptile).
        query_loss: ``(T,)`` per-task query loss after adaptation (detached for Reptile).
    """

    objective: torch.Tensor
    query_loss: torch.Tensor


@dataclass
class TaskExport:
    """One task's model as an explicit graph, before and after adaptation.

    Attributes:
        graph: the task's model (the learner's graph, or a routed learner's export for the task).
        meta: every weight of ``graph`` before adaptation (no task dimension).
        adapted: every weight of ``graph`` after adaptation.
        choice: routed slot -> chosen candidate (empty for an unrouted learner).
        routed_by: what chose it, for a learner that can route either way: ``"data"`` (the
            support set) or ``"descriptor"``; ``None``: the learner's one policy.
    """

    graph: ModuleGraph
    meta: Params
    adapted: Params
    choice: dict[str, int] = field(default_factory=dict)
    routed_by: str | None = None


class Submodule:
    """A registered submodule named on its class (``graph = Submodule()``): ``nn.Module`` keeps
    submodules out of the instance ``__dict__``, so without it a runtime protocol check that looks
    attributes up statically (``inspect.getattr_static``, Python 3.12+) would not see ``graph``
    and call a learner no :class:`Learner`. Reads return the submodule; assignment registers it
    as ``nn.Module`` always does."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        try:
            return obj._modules[self.name]
        except KeyError:
            raise AttributeError(self.name) from None


class Structure(Protocol):
    """A learner's model structure: what a checkpoint stores to rebuild it."""

    def to_json_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class Learner(Protocol):
    """A meta-learner: meta-trained on meta-batches, adapted and evaluated per task.

    Attributes:
        graph: the model structure (``ModuleGraph`` or ``ModulePool``); its ``to_json_dict`` goes
            into every checkpoint.
        eval_inner_steps: adaptation steps at evaluation.
    """

    graph: Structure
    eval_inner_steps: int

    def meta_step(self, batch: TaskBatch, *, step: int = 0) -> MetaStep:
        """The meta-objective of one meta-batch at meta-iteration ``step`` (0-based; the trainer's
        count of optimizer steps, so micro-batches of one meta-iteration share it)."""
        ...

    def adapt(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        steps: int | None = None,
        first_order: bool | None = None,
        on_step=None,
    ) -> tuple[Params, Params]:
        """Adapt to support sets ``x: (T, K, ...)``, ``y``; returns ``(fast, frozen)`` for
        :meth:`query_loss` (``fast`` carries a leading task dimension)."""
        ...

    def query_loss(
        self,
        fast: Params,
        frozen: Params,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        metric: bool = False,
    ) -> torch.Tensor:
        """``(T,)`` per-task query loss (or metric) of an adapted state."""
        ...

    def evaluate(self, batch: TaskBatch, *, steps: int | None = None) -> torch.Tensor:
        """Query metric after 0..S inner steps (S: ``eval_inner_steps``): ``(S + 1, T)``."""
        ...

    def export_tasks(self, batch: TaskBatch, *, steps: int | None = None) -> list[TaskExport]:
        """Every task's graph with its weights before and after ``steps`` inner steps."""
        ...


@runtime_checkable
class ParameterAdapter(Learner, Protocol):
    """A learner whose adapted state is a plain parameter dict of one ``ModuleGraph`` (so it can
    continue adapting from one task to the next, as the forgetting measurement does).

    Attributes:
        graph: the model; loss: ``"mse"`` or ``"cross_entropy"``; adapt_keys: the adapted
            parameter names.
    """

    graph: ModuleGraph
    loss: str
    adapt_keys: list[str]

    def split_params(self, params: Params | None = None) -> tuple[Params, Params]:
        """``(adapted scope, frozen rest)`` of the meta-learned parameters."""
        ...

    def lrs(self) -> StepSizes:
        """Inner step size per adapted parameter name."""
        ...


@runtime_checkable
class CandidateSlots(Protocol):
    """A structure whose slots each choose one of several candidates per task (a router's
    ``ModulePool``, the annealed learner's ``SumBanks``).

    Attributes:
        routed_slots: the slots that choose; num_candidates: slot -> its candidates; shared:
            every slot chooses from one bank (so candidate ``k`` is one module in every slot).
    """

    routed_slots: list[str]
    num_candidates: dict[str, int]
    shared: bool


@runtime_checkable
class RoutingLearner(Learner, Protocol):
    """A learner that chooses a composition per task: its ``graph`` has candidate slots, and
    :meth:`choices` names each task's candidates."""

    graph: CandidateSlots

    def choices(self, batch: TaskBatch) -> dict[str, torch.Tensor]:
        """Routed slot -> ``(T,)`` each task's candidate (``{}``: no hard choice, e.g. uniform)."""
        ...


def candidate_slots(learner: object) -> CandidateSlots | None:
    """``learner``'s candidate slots when it is a :class:`RoutingLearner` (its ``choices`` may
    still be empty: uniform routing mixes every candidate), else ``None``: one graph for every
    task."""
    if isinstance(learner, RoutingLearner) and isinstance(learner.graph, CandidateSlots):
        return learner.graph
    return None
