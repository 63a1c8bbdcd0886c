"""Fashion-MNIST (10 real photographed clothing classes) as N-way episodes: a cross-domain test.

Read from Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``). With only ten
classes, splits are disjoint at the level of *images*, not classes: meta-train and meta-val use the
official training file (the last ``val_per_class`` images of each class are meta-val) and meta-test
uses the official test file. Its use is as an out-of-domain meta-test for a learner meta-trained on
another family (e.g. glyphs), whose classes it never shares.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from metacompose.modules.space import Space
from metacompose.tasks.episodes import EpisodeFamily

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def read_idx(path: str | Path) -> np.ndarray:
    """Read a (gzipped) IDX file of unsigned bytes: labels ``(n,)`` or images ``(n, H, W)``."""
    path = Path(path)
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    magic, ndim = int.from_bytes(raw[:4], "big"), raw[3]
    if magic >> 8 != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {magic:#x})")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_part(root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 28, 28)`` and labels ``(n,)`` of ``part`` ("train" or "t10k")."""
    return (
        read_idx(root / f"{part}-images-idx3-ubyte.gz"),
        read_idx(root / f"{part}-labels-idx1-ubyte.gz"),
    )


def by_class(images: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``(C, S, H, W)``: the first S images of each class in file order, S the smallest class size."""
    idx = [np.flatnonzero(labels == c) for c in range(n_classes)]
    s = min(len(i) for i in idx)
    return np.stack([images[i[:s]] for i in idx])


class FashionMNISTFamily(EpisodeFamily):
    """N-way episodes of Fashion-MNIST, 28x28 grey images in [0, 1].

    Args:
        root: folder holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``.
        ways: classes per episode (at most 10).
        val_per_class: training images per class held out as meta-val.
    """

    in_space = Space("image", (1, 28, 28))

    def __init__(
        self, *, root: str | Path = FASHION_DIR, ways: int = 5, val_per_class: int = 1000
    ) -> None:
        root = Path(root)
        if not (root / "train-images-idx3-ubyte.gz").exists():
            raise FileNotFoundError(
                f"Fashion-MNIST not found in {root}; install it with `apt-get install dataset-fashion-mnist`"
            )
        if not 2 <= ways <= 10:
            raise ValueError(f"Fashion-MNIST has 10 classes, ways must be in 2..10, got {ways}")
        train = by_class(*read_part(root, "train"), 10)
        test = by_class(*read_part(root, "t10k"), 10)
        self.name = f"fashion-mnist-{ways}way"
        self.out_dim = ways
        self.ways = ways
        split = {"train": train[:, :-val_per_class], "val": train[:, -val_per_class:], "test": test}
        self.images = {
            k: torch.from_numpy(np.ascontiguousarray(v)).unsqueeze(2) for k, v in split.items()
        }
        self.classes = torch.arange(10)
        self.splits = {k: (v, self.classes) for k, v in self.images.items()}
