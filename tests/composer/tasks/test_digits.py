import numpy as np
import pytest
import torch

from metacompose.tasks.base import SPLITS, TaskFamily

sklearn = pytest.importorskip("sklearn", reason="DigitsFamily needs scikit-learn (extra [data])")

from metacompose.tasks.digits import DigitsFamily  # noqa: E402


def test_digits_episodes_and_splits():
    from sklearn.datasets import load_digits

    f = DigitsFamily(ways=5, size=8)
    assert isinstance(f, TaskFamily) and f.in_space.shape == (1, 8, 8)
    bunch = load_digits()
    raw = torch.from_numpy(bunch.images.astype(np.float32) / 16).flatten(1)
    sizes = {s: f.images[s].shape[1] for s in SPLITS}
    assert sum(sizes.values()) <= 174  # the smallest digit class has 174 images
    for s in SPLITS:
        b = f.sample(3, shots=2, query=3, generator=torch.Generator().manual_seed(0), split=s)
        assert b.support_x.shape == (3, 10, 1, 8, 8) and b.query_y.shape == (3, 15)
        for t in range(3):  # each image is a digit of the class its label stands for
            for x, y in zip(b.query_x[t], b.query_y[t]):
                hit = (raw == x.flatten()).all(1).nonzero().flatten()
                assert bunch.target[hit[0]] == b.info["classes"][t, y]
    # the splits hold different images (load_digits has no duplicate images), each of its class
    seen = {}
    for s in SPLITS:
        for c in range(10):
            for x in f.images[s][c].flatten(1):
                hit = (raw == x).all(1).nonzero().flatten().tolist()
                assert len(hit) == 1 and bunch.target[hit[0]] == c
                seen[hit[0]] = seen.get(hit[0], 0) + 1
    assert max(seen.values()) == 1


def test_digits_resized_for_the_conv_net():
    f = DigitsFamily(ways=10, size=28)
    b = f.sample(2, shots=1, query=1, generator=torch.Generator().manual_seed(0))
    assert (
        b.support_x.shape == (2, 10, 1, 28, 28)
        and b.support_x.min() >= 0
        and b.support_x.max() <= 1
    )
