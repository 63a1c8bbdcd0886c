"""The pure-Python Student t quantile against scipy and closed forms."""

import math

import pytest

from metacompose.report.student_t import regularized_beta, t_ppf

stats = pytest.importorskip("scipy.stats")
special = pytest.importorskip("scipy.special")
PROBS = (1e-6, 0.001, 0.01, 0.025, 0.05, 0.1, 0.3, 0.49, 0.51, 0.75, 0.9, 0.95, 0.975, 0.99,
         0.995, 0.999, 1 - 1e-6)  # fmt: skip


def test_t_ppf_matches_scipy_for_df_1_to_200():
    for df in range(1, 201):
        for p in PROBS:
            want = float(stats.t.ppf(p, df))
            assert math.isclose(t_ppf(p, df), want, rel_tol=1e-10), (df, p)
    assert t_ppf(0.5, 7) == 0.0
    for p in PROBS:  # closed forms: df=1 is Cauchy; df=2 has t = (2p - 1) / sqrt(2p(1 - p))
        cauchy = math.copysign(1 / math.tan(math.pi * min(p, 1 - p)), p - 0.5)
        assert math.isclose(t_ppf(p, 1), cauchy, rel_tol=1e-12)
        assert math.isclose(t_ppf(p, 2), (2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel_tol=1e-12)


@pytest.mark.parametrize("df", [0.5, 2.5, 1000.0])
def test_t_ppf_non_integer_and_large_df(df):
    for p in (0.01, 0.6, 0.975):
        assert math.isclose(t_ppf(p, df), float(stats.t.ppf(p, df)), rel_tol=1e-9)


def test_regularized_beta_matches_scipy():
    for a, b in ((0.5, 0.5), (2.0, 0.5), (50.0, 0.5), (3.0, 7.0)):
        for x in (1e-8, 0.1, 0.5, 0.9, 1 - 1e-8):
            got = regularized_beta(a, b, x, 1 - x)
            assert math.isclose(got, float(special.betainc(a, b, x)), rel_tol=1e-11, abs_tol=1e-300)


@pytest.mark.parametrize("p, df", [(0.0, 3), (1.0, 3), (0.5, 0)])
def test_t_ppf_rejects_bad_arguments(p, df):
    with pytest.raises(ValueError):
        t_ppf(p, df)
