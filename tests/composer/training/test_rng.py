"""RNG states survive a weights_only checkpoint round trip and restore the exact streams."""

from __future__ import annotations

import random

import numpy as np
import torch

from metacompose.training import atomic_save, capture_rng_state, restore_rng_state, safe_load


def draws() -> tuple:
    return torch.rand(3), np.random.rand(3), np.random.randn(1), [random.random() for _ in range(3)]


def test_rng_state_round_trip_through_safe_checkpoint(tmp_path):
    np.random.randn()  # leave a cached gaussian in numpy's state
    atomic_save({"rng": capture_rng_state()}, tmp_path / "rng.ckpt")
    want = draws()
    restore_rng_state(safe_load(tmp_path / "rng.ckpt")["rng"])
    got = draws()
    assert torch.equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])
    assert got[3] == want[3]
