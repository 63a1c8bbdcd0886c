"""N-way K-shot episodes drawn from images stored class by class, and the families' ``sample``."""

from __future__ import annotations

import torch

from metacompose.tasks.base import TaskBatch, check_split


def sample_episodes(
    images: torch.Tensor,
    classes: torch.Tensor,
    *,
    n_tasks: int,
    ways: int,
    shots: int,
    query: int,
    generator: torch.Generator,
    rotate: bool = False,
) -> TaskBatch:
    """Draw ``n_tasks`` N-way episodes.

    Each task picks ``ways`` distinct classes from ``classes`` in random order (the order is the
    label: classes are relabelled 0..N-1 afresh in every task), then ``shots + query`` distinct
    samples of each. Support and query sets are shuffled.

    Args:
        images: ``(C, S, ch, H, W)`` uint8 (scaled by 1/255) or float, S samples of each class.
        classes: ``(C_split,)`` int64 indices into ``images`` of the classes this split may use.
        rotate: rotate each picked class by a random multiple of 90 degrees (Omniglot's
            class augmentation; use it on meta-train only).

    Returns:
        A :class:`TaskBatch` with ``support_x`` ``(T, N*shots, ch, H, W)`` float32, ``support_y``
        ``(T, N*shots)`` int64, ``query_x`` ``(T, N*query, ch, H, W)``, ``query_y`` ``(T, N*query)``
        and ``info["classes"]`` ``(T, N)``: the class index behind each label.
    """
    n_cls, per_class = len(classes), images.shape[1]
    if ways > n_cls:
        raise ValueError(f"{ways}-way episodes need {ways} classes, this split has {n_cls}")
    if shots < 1 or query < 0 or shots + query > per_class:
        raise ValueError(
            f"shots={shots}, query={query} need 1 <= shots and shots + query <= {per_class}"
        )
    g, t = generator, n_tasks
    picked = classes[torch.rand(t, n_cls, generator=g).argsort(1)[:, :ways]]  # (T, N)
    rows = torch.rand(t, ways, per_class, generator=g).argsort(-1)[..., : shots + query]
    x = images[picked[..., None], rows]  # (T, N, K+Q, ch, H, W)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if rotate:
        turns = torch.randint(0, 4, (t, ways), generator=g)
        for k in (1, 2, 3):
            x[turns == k] = torch.rot90(x[turns == k], k, dims=(-2, -1))
    y = torch.arange(ways).view(1, ways, 1).expand(t, ways, shots + query)

    def flat(a: torch.Tensor, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs = a[:, :, lo:hi].reshape(t, ways * (hi - lo), *a.shape[3:])
        ys = y[:, :, lo:hi].reshape(t, ways * (hi - lo))
        order = torch.rand(t, ways * (hi - lo), generator=g).argsort(1)
        take = order.view(t, -1, *([1] * (xs.dim() - 2))).expand_as(xs)
        return xs.gather(1, take), ys.gather(1, order)

    sx, sy = flat(x, 0, shots)
    qx, qy = flat(x, shots, shots + query)
    return TaskBatch(support_x=sx, support_y=sy, query_x=qx, query_y=qy, info={"classes": picked})


class EpisodeFamily:
    """The ``sample`` of the N-way classification families (digits, Fashion-MNIST, glyphs).

    A family sets ``ways`` and ``splits``: for each split, the ``(C, S, ch, H, W)`` images and the
    class indices it draws from (:func:`sample_episodes`); ``rotate_train`` rotates meta-train
    classes only.
    """

    metric = "accuracy"
    ways: int
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    rotate_train: bool = False

    @property
    def num_classes(self) -> int:
        """The global class count that ``info["classes"]`` indexes (:class:`HasClasses`)."""
        return max(int(images.shape[0]) for images, _ in self.splits.values())

    def sample(
        self,
        n_tasks: int,
        *,
        shots: int,
        query: int,
        generator: torch.Generator,
        split: str = "train",
    ) -> TaskBatch:
        check_split(split)
        images, classes = self.splits[split]
        return sample_episodes(
            images,
            classes,
            n_tasks=n_tasks,
            ways=self.ways,
            shots=shots,
            query=query,
            generator=generator,
            rotate=self.rotate_train and split == "train",
        )
