import pytest
import torch

from metacompose.symbolic.results import Proved, Violated
from metacompose.symbolic.spec import TrustRegion
from metacompose.symbolic.trust_region import certify_trust_region


def test_norms_against_hand_computation():
    f64 = torch.float64
    m = [torch.tensor([[1.0, -2.0]], dtype=f64), torch.tensor([0.5], dtype=f64)]
    a = [torch.tensor([[1.3, -2.4]], dtype=f64), torch.tensor([0.5], dtype=f64)]
    l2 = (0.3**2 + 0.4**2) ** 0.5  # 0.5
    res, obs = certify_trust_region(TrustRegion(module="m", norm="l2", bound=0.51), m, a)
    assert isinstance(res, Proved) and obs == pytest.approx(l2, rel=1e-12)
    res, _ = certify_trust_region(TrustRegion(module="m", norm="l2", bound=0.49), m, a)
    assert isinstance(res, Violated) and res.observed == pytest.approx(l2, rel=1e-12)
    res, _ = certify_trust_region(TrustRegion(module="m", norm="linf", bound=0.41), m, a)
    assert isinstance(res, Proved)
    # relative: 0.4 / max|meta| = 0.4 / 2 = 0.2
    res, obs = certify_trust_region(
        TrustRegion(module="m", norm="linf", bound=0.21, relative=True), m, a
    )
    assert isinstance(res, Proved) and obs == pytest.approx(0.2, rel=1e-12)
    res, _ = certify_trust_region(
        TrustRegion(module="m", norm="linf", bound=0.19, relative=True), m, a
    )
    assert isinstance(res, Violated)


def test_a_limit_inside_the_rounding_gap_is_not_proved():
    m, a = (
        [torch.zeros(3, dtype=torch.float64)],
        [torch.tensor([0.1, 0.2, 0.2], dtype=torch.float64)],
    )
    exact = 0.3  # sqrt(0.01 + 0.04 + 0.04) in reals; float sum is not exact
    res, _ = certify_trust_region(TrustRegion(module="m", norm="l2", bound=exact), m, a)
    assert res.status in ("unknown", "proved")
    if res.status == "proved":  # only if the float bound really sits below 0.3
        assert res.certificate.bound <= 0.3


@pytest.mark.parametrize("relative", [False, True])
def test_a_huge_but_finite_change_is_unknown_not_a_crash(relative):
    """||delta||_2^2 overflows float64 although every entry is finite: sound answer is unknown."""
    m = [torch.ones(4, dtype=torch.float64)]
    a = [torch.full((4,), 1e200, dtype=torch.float64)]
    region = TrustRegion(module="m", norm="l2", bound=1.0, relative=relative)
    res, _ = certify_trust_region(region, m, a)
    assert res.status == "unknown" and "overflows" in res.reason
