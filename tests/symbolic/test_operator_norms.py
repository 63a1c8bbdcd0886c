import torch

from metacompose.symbolic.operator_norms import operator_norm_upper


def test_upper_bounds_dominate_reference_norms():
    g = torch.Generator().manual_seed(0)
    for shape in [(1, 1), (40, 1), (40, 40), (3, 17), (1, 40)]:
        w = torch.randn(*shape, generator=g, dtype=torch.float64) * 3
        # reference: power iteration lower bounds of the spectral norm; row-sum loop for linf
        v = torch.randn(shape[1], generator=g, dtype=torch.float64)
        for _ in range(200):
            v = w.T @ (w @ v)
            v = v / v.norm()
        sigma = float((w @ v).norm())
        linf = max(sum(abs(float(w[i, j])) for j in range(shape[1])) for i in range(shape[0]))
        up2, upinf = operator_norm_upper(w, "l2"), operator_norm_upper(w, "linf")
        assert up2 >= sigma and up2 <= sigma * (1 + 1e-9) + 1e-9
        assert upinf >= linf and upinf <= linf * (1 + 1e-12)
    assert operator_norm_upper(torch.tensor([[float("nan")]]), "l2") != operator_norm_upper(
        torch.tensor([[float("nan")]]), "l2"
    )
