"""``scripts/probe_routing.py`` and ``scripts/pilot_annealed_routing.py``: their least-squares fits
against ``torch.linalg.lstsq`` (float64), and the context probe's global search against the truth."""

from types import SimpleNamespace

import torch
from script_loader import load_script

from metacompose.tasks import CompositionalFamily


def test_weighted_fit_equals_lstsq_on_the_kept_points():
    probe = load_script("probe_routing")
    g = torch.Generator().manual_seed(0)
    cols = torch.randn(5, 12, 3, generator=g, dtype=torch.float64)
    y = torch.randn(5, 12, generator=g, dtype=torch.float64)
    w = (torch.arange(12) % 4 != 0).double()  # 3 points left out of the fit
    pred = probe.fit_linear(cols, y, w)
    keep = w.bool()
    coef = torch.linalg.lstsq(cols[:, keep], y[:, keep, None]).solution
    # the fit keeps a ridge of 1e-5 x trace(X^T X): a relative difference of ~1e-4 at most
    torch.testing.assert_close(pred, (cols @ coef)[..., 0], atol=1e-3, rtol=1e-3)


def test_pilot_pair_mse_equals_lstsq_for_every_context_pair():
    pilot = load_script("pilot_annealed_routing")
    g = torch.Generator().manual_seed(1)
    f, gg = torch.randn(3, 4, 10, generator=g), torch.randn(2, 4, 10, generator=g)
    y = torch.randn(4, 10, generator=g)
    w = (torch.arange(10) < 7).float()
    mse = pilot.pair_mse(f, gg, y, w)
    assert mse.shape == (3, 2, 4)
    for a in range(3):
        for b in range(2):
            for n in range(4):
                cols = torch.stack([f[a, n], gg[b, n], torch.ones(10)], -1)[:7].double()
                sol = torch.linalg.lstsq(cols, y[n, :7, None].double()).solution
                ref = ((cols @ sol)[:, 0] - y[n, :7].double()).pow(2).mean()
                torch.testing.assert_close(mse[a, b, n].double(), ref, atol=2e-4, rtol=1e-3)


def test_context_probe_finds_the_true_pair_and_a_local_search_often_does_not(capsys):
    probe = load_script("probe_routing")
    family = CompositionalFamily(
        structure="sum", inner=["ramp", "step", "vee", "saw"],
        outer=["sine", "bump", "sinc", "chirp"],
        held_out=[["ramp", "chirp"], ["step", "sine"], ["vee", "bump"], ["saw", "sinc"]],
        check={"min_distinct": 0},
    )  # fmt: skip
    args = SimpleNamespace(seed=0, shots=10, tasks=30, local_steps=5, local_lr=0.05)
    probe.probe_context(family, args)
    lines = capsys.readouterr().out.splitlines()
    joint = {ln.split()[1]: float(ln.split("joint")[1]) for ln in lines}
    assert joint["global"] >= 0.9  # the true formulas: 10 shots pin the pair down
    assert joint["local"] <= 0.8


def test_pilot_query_mse_equals_lstsq_on_the_support_then_the_query():
    pilot = load_script("pilot_annealed_routing")
    g = torch.Generator().manual_seed(2)
    f, gg, y = (torch.randn(6, 9, generator=g) for _ in range(3))
    support = (torch.arange(9) < 5).float()
    errs = []
    for n in range(6):
        cols = torch.stack([f[n], gg[n], torch.ones(9)], -1).double()
        sol = torch.linalg.lstsq(cols[:5], y[n, :5, None].double()).solution
        errs.append(((cols[5:] @ sol)[:, 0] - y[n, 5:].double()).pow(2))
    ref = float(torch.cat(errs).mean())
    assert abs(pilot.query_mse(f, gg, y, support) - ref) <= 1e-3 * ref


def test_pilot_set_purity_is_one_for_any_renaming_and_for_swapped_slots():
    pilot = load_script("pilot_annealed_routing")
    g = torch.Generator().manual_seed(3)
    f, gg = torch.randint(0, 4, (50,), generator=g), torch.randint(0, 4, (50,), generator=g)
    rename = torch.randperm(8, generator=g)
    # bank 1 holds the outer primitives and bank 2 the inner ones: a sum does not care
    pairs = torch.stack([rename[gg + 4], rename[f]], 1)
    line = pilot.shared_purity(pairs, f, gg, 4, 8)
    assert "joint NMI 1.000" in line and "both 1.000" in line
    wrong = pairs.clone()
    wrong[:10, 0] = rename[(gg[:10] + 1) % 4 + 4]  # 10 tasks get a wrong outer candidate
    line = pilot.shared_purity(wrong, f, gg, 4, 8)
    assert "both 0.800" in line


def test_pilot_chain_pairs_equal_a_direct_fit_of_g_of_f():
    pilot = load_script("pilot_annealed_routing")
    torch.manual_seed(4)
    banks = [
        pilot.WarpLineBank(count=c, centres=24, grid=3, basis="linear", spread=1.0) for c in (2, 3)
    ]
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(5, 8, generator=g) * 6 - 3, torch.randn(5, 8, generator=g)
    w = torch.ones(8)
    mse = pilot.all_pairs(banks, x, y, w, chain=True)
    assert mse.shape == (6, 3, 3, 5)
    fi, gi, cf, cg, n = 1, 2, 0, 2, 3
    h = banks[1](banks[0](x)[fi, cf])[gi, cg, n]  # g(f(x)) for that pair and those contexts
    cols = torch.stack([h, torch.ones(8)], -1).double()
    sol = torch.linalg.lstsq(cols, y[n, :, None].double()).solution
    ref = ((cols @ sol)[:, 0] - y[n].double()).pow(2).mean()
    torch.testing.assert_close(mse[fi * 3 + gi, cf, cg, n].double(), ref, atol=2e-4, rtol=1e-3)
