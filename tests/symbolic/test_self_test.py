import pytest

from metacompose.symbolic.self_test import self_test


def test_self_test_fast_tier_on_random_networks():
    s = self_test(24, seed=0, tiers=("fast",), exact_every=6)
    assert s.ok, s.lines()
    assert s.n_proved > 0 and s.n_violated > 0 and s.n_exact_checked > 0
    assert s.n_by_activation == {"relu": 8, "tanh": 8, "sin": 8}


def test_self_test_refine_tier():
    s = self_test(4, seed=1, tiers=("refine",), exact_every=2, timeout_s=2.0)
    assert s.ok, s.lines()
    assert s.n_proved > s.n_unknown


@pytest.mark.slow
def test_self_test_hundreds_of_networks():
    s = self_test(300, seed=2, tiers=("fast", "refine"), exact_every=3, timeout_s=2.0)
    assert s.ok, s.lines()


def test_self_test_reports_progress_after_each_network():
    calls = []
    s = self_test(3, seed=0, tiers=("fast",), on_progress=lambda done, n: calls.append((done, n)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert s.n_networks == 3
