import gzip

import numpy as np
import pytest
import torch

from metacompose.tasks.base import SPLITS
from metacompose.tasks.fashion_mnist import FASHION_DIR, FashionMNISTFamily, by_class, read_idx


def write_idx(path, array: np.ndarray) -> None:
    head = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(head + array.astype(np.uint8).tobytes())


def fake_fashion(root, n_train=40, n_test=20):
    rng = np.random.default_rng(0)
    for part, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, (n, 28, 28))
        images[:, 0, 0] = labels  # pixel (0, 0) holds the label
        write_idx(root / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{part}-labels-idx1-ubyte.gz", labels)


def test_read_idx_and_by_class(tmp_path):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), arr)
    labels = np.array([1, 0, 1, 0, 1])
    grouped = by_class(np.arange(5) * 10, labels, 2)
    np.testing.assert_array_equal(grouped, [[10, 30], [0, 20]])  # first 2 (the smallest class) each


def test_family_on_a_synthetic_copy(tmp_path):
    fake_fashion(tmp_path)
    f = FashionMNISTFamily(root=tmp_path, ways=5, val_per_class=1)
    assert [f.images[s].shape[1] for s in SPLITS] == [3, 1, 2]
    b = f.sample(4, shots=1, query=1, generator=torch.Generator().manual_seed(0), split="train")
    label_pixel = (b.support_x[:, :, 0, 0, 0] * 255).round().long()
    assert torch.equal(label_pixel, b.info["classes"].gather(1, b.support_y))
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        FashionMNISTFamily(root=tmp_path / "nothing")


@pytest.mark.skipif(
    not FASHION_DIR.exists(), reason="needs Debian's dataset-fashion-mnist (optional)"
)
def test_real_fashion_mnist():
    f = FashionMNISTFamily(ways=5)
    assert [tuple(f.images[s].shape) for s in SPLITS] == [
        (10, 5000, 1, 28, 28),
        (10, 1000, 1, 28, 28),
        (10, 1000, 1, 28, 28),
    ]
    b = f.sample(2, shots=5, query=15, generator=torch.Generator().manual_seed(0), split="test")
    assert b.query_x.shape == (2, 75, 1, 28, 28) and b.query_x.max() <= 1
