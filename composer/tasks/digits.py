"""scikit-learn's bundled 8x8 handwritten digits as N-way episodes, for fast pipeline tests.

Needs ``scikit-learn`` (extra ``[data]``); no download. Ten classes only, so the splits are disjoint
at the level of *images* (each class's images are split by a seeded shuffle), not classes: it checks
that a pipeline learns, not that it generalises to new classes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from metacompose.modules.space import Space
from metacompose.optional import require
from metacompose.tasks.base import SPLITS
from metacompose.tasks.episodes import EpisodeFamily
from metacompose.tasks.splits import split_indices


class DigitsFamily(EpisodeFamily):
    """N-way episodes of ``sklearn.datasets.load_digits`` (1,797 images, about 180 per digit).

    Args:
        ways: classes per episode (at most 10).
        size: image side; the 8x8 digits are resized bilinearly when it is not 8.
        split_seed: seed of the per-class image split.
        fractions: fractions of each class's images in meta-train, meta-val and meta-test.
    """

    def __init__(
        self,
        *,
        ways: int = 5,
        size: int = 28,
        split_seed: int = 0,
        fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    ) -> None:
        load_digits = require(
            "sklearn.datasets", extra="data", purpose="the digits family"
        ).load_digits

        if not 2 <= ways <= 10:
            raise ValueError(f"digits has 10 classes, ways must be in 2..10, got {ways}")
        if not 1 <= size <= 1024:
            raise ValueError(f"size must be in 1..1024 (pixels), got {size}")
        bunch = load_digits()
        images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
        if size != 8:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in SPLITS}
        for c in range(10):
            rows = np.flatnonzero(bunch.target == c)
            for k, idx in split_indices(
                len(rows), fractions=tuple(fractions), seed=split_seed + c
            ).items():
                parts[k].append(images[rows[idx]])
        self.images = {
            k: torch.stack([p[: min(len(q) for q in v)] for p in v]) for k, v in parts.items()
        }
        self.name = f"digits-{ways}way"
        self.in_space = Space("image", (1, size, size))
        self.out_dim = ways
        self.ways = ways
        self.classes = torch.arange(10)
        self.splits = {k: (v, self.classes) for k, v in self.images.items()}
