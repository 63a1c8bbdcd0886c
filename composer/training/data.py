"""Seeded task streams and the LightningDataModule that feeds meta-batches to the trainer."""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from composer.tasks.base import TaskBatch, TaskFamily, check_split, derive_seed


class TaskStream(IterableDataset):
    """An endless stream of meta-batches of one split, from a generator seeded by
    ``derive_seed(seed, split, rank)``: splits and ranks never share a stream.

    Its position is the generator state: ``state_dict()`` / ``load_state_dict()`` resume it exactly.

    Args:
        family: the task family.
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: the global seed.
        batch_size: tasks per meta-batch drawn by this rank.
        shots: support examples per task.
        query: query examples per task.
        rank: the data-parallel rank drawing this stream.
        num_batches: stop after this many batches (``None``: endless); a finite stream restarts from
            its seed on every iteration (a fixed validation set).
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
        num_batches: int | None = None,
    ) -> None:
        super().__init__()
        self.family = family
        self.split = check_split(split)
        self.batch_size = batch_size
        self.shots = shots
        self.query = query
        self.num_batches = num_batches
        self.seed = derive_seed(seed, split, rank)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.batches_drawn = 0

    def sample(self) -> TaskBatch:
        self.batches_drawn += 1
        return self.family.sample(
            self.batch_size,
            shots=self.shots,
            query=self.query,
            generator=self.generator,
            split=self.split,
        )

    def __iter__(self) -> Iterator[TaskBatch]:
        if self.num_batches is None:
            while True:
                yield self.sample()
        self.generator.manual_seed(self.seed)
        self.batches_drawn = 0
        for _ in range(self.num_batches):
            yield self.sample()

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an endless TaskStream has no length")
        return self.num_batches

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "batches_drawn": self.batches_drawn}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.batches_drawn = int(state["batches_drawn"])


class MetaDataModule(L.LightningDataModule):
    """Meta-train and meta-validation streams for one task family.

    Args:
        family: the task family.
        seed: the global seed.
        meta_batch_size: tasks per meta-iteration over all ranks (each rank draws its share).
        shots: support examples per task.
        query: query examples per task.
        val_tasks: tasks in the (fixed) meta-validation set.
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
    ) -> None:
        super().__init__()
        self.family = family
        self.seed = seed
        self.meta_batch_size = meta_batch_size
        self.shots = shots
        self.query = query
        self.val_tasks = val_tasks
        self.train_stream: TaskStream | None = None
        self._pending_state: dict | None = None

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        if self.meta_batch_size % world:
            raise ValueError(
                f"data.meta_batch_size={self.meta_batch_size} must be divisible by the "
                f"{world} data-parallel ranks"
            )
        self.train_stream = TaskStream(
            family=self.family,
            split="train",
            seed=self.seed,
            rank=rank,
            batch_size=self.meta_batch_size // world,
            shots=self.shots,
            query=self.query,
        )
        if self._pending_state is not None:
            self.train_stream.load_state_dict(self._pending_state)
            self._pending_state = None
        return DataLoader(self.train_stream, batch_size=None, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        per_batch = min(self.meta_batch_size, self.val_tasks)
        stream = TaskStream(
            family=self.family,
            split="val",
            seed=self.seed,
            rank=rank,
            batch_size=per_batch,
            shots=self.shots,
            query=self.query,
            num_batches=max(1, self.val_tasks // per_batch // world),
        )
        return DataLoader(stream, batch_size=None, num_workers=0)

    def state_dict(self) -> dict:
        return (
            {"train_stream": self.train_stream.state_dict()}
            if self.train_stream is not None
            else {}
        )

    def load_state_dict(self, state: dict) -> None:
        self._pending_state = state.get("train_stream")
