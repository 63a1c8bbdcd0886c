"""Digits, Fashion-MNIST and glyph episodes are the same, bit for bit, as the ones recorded before
the three families shared one ``sample`` (tests/fixtures/episode_digests.json; same seeds, splits)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_fashion_mnist import fake_fashion

from metacompose.tasks.base import SPLITS, TaskBatch
from metacompose.tasks.glyph_dataset import GlyphDataset

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "episode_digests.json"


def digest(b: TaskBatch) -> str:
    h = hashlib.sha256()
    for t in (b.support_x, b.support_y, b.query_x, b.query_y, b.info["classes"]):
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def families(tmp: Path) -> dict:
    from metacompose.tasks.digits import DigitsFamily
    from metacompose.tasks.fashion_mnist import FashionMNISTFamily
    from metacompose.tasks.glyphs import GlyphFamily

    fake_fashion(tmp)
    rng = np.random.default_rng(0)
    GlyphDataset(
        images=rng.integers(0, 256, (30, 6, 12, 12), dtype=np.uint8),
        scripts=tuple(f"s{i}" for i in range(10)),
        class_script=np.arange(30) % 10,
        codepoints=np.arange(30) + 0x41,
        seed=0,
    ).save(tmp / "g.npz")
    return {
        "digits": DigitsFamily(ways=3, size=8),
        "fashion_mnist": FashionMNISTFamily(root=tmp, ways=4, val_per_class=2),
        "glyphs": GlyphFamily(path=tmp / "g.npz", ways=3),
        "glyphs_rotated": GlyphFamily(path=tmp / "g.npz", ways=3, rotate_train=True),
    }


def digests(tmp: Path) -> dict[str, str]:
    out = {}
    for name, family in families(tmp).items():
        for split in SPLITS:
            for seed in (0, 1):
                g = torch.Generator().manual_seed(seed)
                b = family.sample(3, shots=1, query=1, generator=g, split=split)
                out[f"{name}/{split}/{seed}"] = digest(b)
    return out


def test_episodes_match_the_recorded_ones(tmp_path):
    pytest.importorskip("sklearn")
    assert digests(tmp_path) == json.loads(FIXTURE.read_text())
