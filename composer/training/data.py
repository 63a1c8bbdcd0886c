"""Seeded task streams and the LightningDataModule that feeds meta-batches to the trainer.

Every meta-batch is a pure function of ``(seed, split, index)`` (plus the rank, see ``sharding``):
batch ``i`` is drawn from a generator seeded with ``derive_seed(stream_seed, i)``. A stream's
position is therefore one integer, the number of (micro-)batches the trainer has *consumed*, which
is counted when a batch reaches the training step, not when the loader prefetches it. Lightning
fetches one batch ahead, so counting draws would resume one batch late.

Sharding over data-parallel ranks (``data.sharding``):

``"per_rank"`` (default)
    every rank draws its own disjoint stream, seeded by ``derive_seed(seed, split, rank)``, of
    ``meta_batch_size / world_size`` tasks per meta-batch. Cheapest; the tasks seen depend on the
    world size.
``"global"``
    every rank draws the whole meta-batch from one stream seeded by ``derive_seed(seed, split)`` and
    keeps its slice ``[rank * T/W, (rank + 1) * T/W)``. The union over ranks is the meta-batch a
    single process sees, so training gives the same answer at every scale (up to float rounding).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from metacompose.tasks.base import TaskBatch, TaskFamily, check_split, derive_seed

SHARDINGS = ("per_rank", "global")


def select_tasks(batch: TaskBatch, index: torch.Tensor | slice) -> TaskBatch:
    """The tasks ``index`` of ``batch`` (a slice or an index tensor over the task dimension)."""
    return batch.select(index)


class TaskStream(IterableDataset):
    """A stream of meta-batches of one split; batch ``i`` depends only on the seed and ``i``.

    Each item is this rank's share of one meta-batch, cut into ``chunks`` equal micro-batches that
    the trainer accumulates gradients over (``chunks=1``: the whole share at once).

    Args:
        family: the task family.
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: the global seed.
        batch_size: tasks per meta-batch over ALL ranks.
        shots: support examples per task.
        query: query examples per task.
        rank: this data-parallel rank.
        world_size: number of data-parallel ranks.
        sharding: ``"per_rank"`` or ``"global"`` (see the module docstring).
        chunks: micro-batches per meta-batch on each rank.
        num_batches: stop after this many meta-batches (``None``: endless). A finite stream
            restarts from batch 0 on every iteration (a fixed validation set).
        start: index of the first item (micro-batch) to yield; updated to resume.
    """

    def __init__(
        self,
        *,
        family: TaskFamily,
        split: str,
        seed: int,
        batch_size: int,
        shots: int,
        query: int,
        rank: int = 0,
        world_size: int = 1,
        sharding: str = "per_rank",
        chunks: int = 1,
        num_batches: int | None = None,
        start: int = 0,
    ) -> None:
        super().__init__()
        if sharding not in SHARDINGS:
            raise ValueError(f"data.sharding={sharding!r}: expected one of {SHARDINGS}")
        if batch_size % (world_size * chunks):
            raise ValueError(
                f"data.meta_batch_size={batch_size} must be divisible by {world_size} rank(s) x "
                f"{chunks} chunk(s) per rank"
            )
        self.family = family
        self.split = check_split(split)
        self.shots = shots
        self.query = query
        self.rank = rank
        self.world_size = world_size
        self.sharding = sharding
        self.chunks = chunks
        self.num_batches = num_batches
        self.start = start
        self.per_rank = batch_size // world_size
        if sharding == "global":
            self.seed, self.draw = derive_seed(seed, split), batch_size
        else:
            self.seed, self.draw = derive_seed(seed, split, rank), self.per_rank
        self._cached: tuple[int, TaskBatch] | None = None

    def meta_batch(self, index: int) -> TaskBatch:
        """This rank's share of meta-batch ``index``: ``per_rank`` tasks."""
        g = torch.Generator().manual_seed(derive_seed(self.seed, index))
        batch = self.family.sample(
            self.draw, shots=self.shots, query=self.query, generator=g, split=self.split
        )
        if self.sharding == "global":
            batch = select_tasks(
                batch, slice(self.rank * self.per_rank, (self.rank + 1) * self.per_rank)
            )
        return batch

    def item(self, position: int) -> TaskBatch:
        """Micro-batch ``position``: chunk ``position % chunks`` of meta-batch ``position // chunks``."""
        index, chunk = divmod(position, self.chunks)
        if self._cached is None or self._cached[0] != index:
            self._cached = (index, self.meta_batch(index))
        if self.chunks == 1:
            return self._cached[1]
        size = self.per_rank // self.chunks
        return select_tasks(self._cached[1], slice(chunk * size, (chunk + 1) * size))

    def __iter__(self) -> Iterator[TaskBatch]:
        if self.num_batches is None:
            position = self.start
            while True:
                yield self.item(position)
                position += 1
        for position in range(self.num_batches * self.chunks):
            yield self.item(position)

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an endless TaskStream has no length")
        return self.num_batches * self.chunks


class Grouped(IterableDataset):
    """An endless stream's items in lists of ``size`` consecutive ones: one training batch of
    ``trainer.steps_per_call`` meta-iterations (:mod:`metacompose.training.steps_per_call`)."""

    def __init__(self, stream: TaskStream, size: int) -> None:
        super().__init__()
        self.stream, self.size = stream, size

    def __iter__(self) -> Iterator[list[TaskBatch]]:
        items = iter(self.stream)
        while True:
            yield [next(items) for _ in range(self.size)]


JOIN_MAX = 1000  # tasks in one joined meta-validation batch (vector inputs) at most ...
JOIN_BATCHES = 8  # ... and meta-batches


class Joined(IterableDataset):
    """A finite stream's meta-batches of vector tasks joined into batches of up to ``max_tasks``
    tasks, in order: the same tasks, evaluated in one vectorised call instead of one per
    meta-batch (the sinusoid's 200 validation tasks: 3x less time, the same curve per task).
    Image tasks pass as they come (a conv evaluation's memory grows with its tasks), and so does a
    batch that cannot join the ones before it (another descriptor presence, ``info`` keys or
    example shapes)."""

    def __init__(self, stream: Iterable[TaskBatch], *, max_tasks: int) -> None:
        super().__init__()
        self.stream, self.max_tasks = stream, max_tasks

    def __iter__(self) -> Iterator[TaskBatch]:
        group: list[TaskBatch] = []
        for batch in self.stream:
            full = group and sum(b.num_tasks for b in group) + batch.num_tasks > self.max_tasks
            if group and (full or not _joinable(group[0], batch)):
                yield TaskBatch.cat(group)
                group = []
            if batch.support_x.dim() >= 5:
                yield batch
            else:
                group.append(batch)
        if group:
            yield TaskBatch.cat(group)


def _joinable(a: TaskBatch, b: TaskBatch) -> bool:
    """Whether ``TaskBatch.cat([a, b])`` holds both: the same fields, each of the same shape past
    the task dimension."""
    if (a.descriptor is None) != (b.descriptor is None) or a.info.keys() != b.info.keys():
        return False
    pairs = [
        (getattr(a, f), getattr(b, f)) for f in ("support_x", "support_y", "query_x", "query_y")
    ]
    pairs += [(a.info[k], b.info[k]) for k in a.info]
    if a.descriptor is not None:
        pairs.append((a.descriptor, b.descriptor))
    return all(x.shape[1:] == y.shape[1:] and x.dtype == y.dtype for x, y in pairs)


class MetaDataModule(L.LightningDataModule):
    """Meta-train and meta-validation streams for one task family.

    The meta-train position (micro-batches consumed by training steps) is saved in checkpoints and
    restored exactly, whatever the loader prefetched.

    Args:
        family: the task family.
        seed: the global seed.
        meta_batch_size: tasks per meta-iteration over all ranks.
        shots: support examples per task.
        query: query examples per task.
        val_tasks: tasks in the (fixed) meta-validation set, split over ranks.
        sharding: ``"per_rank"`` or ``"global"`` (see the module docstring).
        chunks: micro-batches per meta-batch and rank (gradient accumulation; see
            ``data.task_chunk_size``).
        steps_per_call: meta-batches per training batch (:mod:`metacompose.training.steps_per_call`).
    """

    def __init__(
        self,
        *,
        family: TaskFamily,
        seed: int,
        meta_batch_size: int,
        shots: int,
        query: int,
        val_tasks: int = 200,
        sharding: str = "per_rank",
        chunks: int = 1,
        steps_per_call: int = 1,
    ) -> None:
        super().__init__()
        self.family = family
        self.seed = seed
        self.meta_batch_size = meta_batch_size
        self.shots = shots
        self.query = query
        self.val_tasks = val_tasks
        self.sharding = sharding
        self.chunks = chunks
        self.steps_per_call = steps_per_call
        self.consumed = 0
        self.train_stream: TaskStream | None = None

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        self.train_stream = TaskStream(
            family=self.family,
            split="train",
            seed=self.seed,
            batch_size=self.meta_batch_size,
            shots=self.shots,
            query=self.query,
            rank=rank,
            world_size=world,
            sharding=self.sharding,
            chunks=self.chunks,
            start=self.consumed,
        )
        n = self.steps_per_call
        batches = self.train_stream if n == 1 else Grouped(self.train_stream, n)
        return DataLoader(batches, batch_size=None, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        per_batch = min(self.meta_batch_size, self.val_tasks)
        per_batch -= per_batch % world
        stream = TaskStream(
            family=self.family,
            split="val",
            seed=self.seed,
            batch_size=max(per_batch, world),
            shots=self.shots,
            query=self.query,
            rank=rank,
            world_size=world,
            sharding="global",  # every rank validates its slice of the same fixed set
            num_batches=max(1, self.val_tasks // max(per_batch, world)),
        )
        # Joined only when a meta-batch is adapted whole (no micro-batches under a memory limit).
        joined = Joined(stream, max_tasks=min(JOIN_MAX, JOIN_BATCHES * per_batch))
        return DataLoader(joined if self.chunks == 1 else stream, batch_size=None, num_workers=0)

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # A TaskBatch moves itself: cheaper than Lightning's generic walk over a dataclass.
        if isinstance(batch, TaskBatch):
            return batch.to(device)
        if isinstance(batch, list) and all(isinstance(b, TaskBatch) for b in batch):
            return [b.to(device) for b in batch]
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count a meta-train micro-batch as consumed when it reaches the training step."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training:
            self.consumed += len(batch) if isinstance(batch, list) else 1
        return batch

    def state_dict(self) -> dict:
        return {"consumed": self.consumed, "sharding": self.sharding, "chunks": self.chunks}

    def load_state_dict(self, state: dict) -> None:
        self.consumed = int(state.get("consumed", 0))
        if self.train_stream is not None:
            self.train_stream.start = self.consumed
