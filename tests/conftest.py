"""Shared pytest set-up: fixed seeds for every test, one torch thread (stable timings, no oversubscription)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def pytest_configure(config):
    torch.set_num_threads(1)
