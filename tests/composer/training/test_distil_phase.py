"""The distil phase (metacompose.training.distil_phase): the teacher's labels against a brute-force
float64 routing, and which replica the phase keeps."""

from __future__ import annotations

import math

import pytest
import torch
from test_block_restarts import polish_setup, same_bank

from metacompose.tasks.base import derive_seed
from metacompose.training import block_restarts
from metacompose.training.block_restarts import fixed_fits, pool_learner
from metacompose.training.distil_phase import (
    RoutedByTeacher,
    keep_if_better,
    run_distil,
    teacher_of,
)


def brute_force_pairs(f_bank, g_bank, x, y, *, grid, ridge: float) -> list[tuple[int, int, float]]:
    """Per task: the (f, g) of the lowest ridge least-squares residual of ``y ~ a f + b g`` over
    every pair at every context pair of ``grid`` (float64, one solve per fit), and the margin of
    that fit's residual to the best of any other pair."""
    hf = f_bank.on_grid(x, grid).detach().double()  # (C, G, T, N)
    hg = g_bank.on_grid(x, grid).detach().double()
    y = y.double()
    out = []
    for t in range(len(x)):
        best: dict[tuple[int, int], float] = {}
        for i in range(hf.shape[0]):
            for j in range(hg.shape[0]):
                for ci in range(len(grid)):
                    for cj in range(len(grid)):
                        design = torch.stack([hf[i, ci, t], hg[j, cj, t]], 1)
                        gram = design.T @ design + ridge * torch.eye(2, dtype=torch.float64)
                        w = torch.linalg.solve(gram, design.T @ y[t])
                        mse = float(((design @ w - y[t]) ** 2).mean())
                        best[(i, j)] = min(best.get((i, j), math.inf), mse)
        ranked = sorted(best.items(), key=lambda kv: kv[1])
        out.append((*ranked[0][0], ranked[1][1] - ranked[0][1]))
    return out


def test_the_labels_are_the_incumbents_routing_of_all_the_points_brute_force():
    learner, family, _ = polish_setup()
    learner.refine = 0  # the grid alone: what the brute force searches
    f, g = learner.f_banks[0], learner.g_banks[0]
    teacher = teacher_of(learner, f, g, amplitude=math.inf)
    gen = torch.Generator().manual_seed(5)
    tasks = RoutedByTeacher(family, teacher).sample(24, shots=5, query=5, generator=gen,
                                                    split="train")  # fmt: skip
    plain = family.sample(24, shots=5, query=5, generator=torch.Generator().manual_seed(5),
                          split="train")  # fmt: skip
    for key in ("support_x", "support_y", "query_x", "query_y"):
        assert torch.equal(getattr(tasks, key), getattr(plain, key))  # the tasks, unchanged
    d = tasks.descriptor
    assert d.shape == (24, 4) and bool((d.sum(1) == 2).all())
    assert bool((d[:, :2].sum(1) == 1).all())  # one f (first), one g
    x = torch.cat([plain.support_x, plain.query_x], 1)[..., 0]
    y = torch.cat([plain.support_y, plain.query_y], 1)[..., 0]
    want = brute_force_pairs(f, g, x, y, grid=f.grid(torch.float32), ridge=learner.ridge)
    clear = 0
    for t, (i, j, margin) in enumerate(want):
        if margin > 1e-5:  # no near-tie that float32 may break the other way
            clear += 1
            assert (int(d[t, :2].argmax()), int(d[t, 2:].argmax())) == (i, j), t
    assert clear >= 16
    # all the points, not the support set alone: some task's label differs from that routing
    support = teacher.choices(plain)
    assert any(
        (int(d[t, :2].argmax()), int(d[t, 2:].argmax()))
        != (int(support["f"][t]), int(support["g"][t]))
        for t in range(24)
    )


def routed_query(pool, tasks) -> float:
    """The query MSE of ``pool``'s one replica, routed and fitted on each task's support set."""
    return float(pool.evaluate(tasks)[-1].double().mean())


def distil(learner, family, fixed, **overrides):
    k = learner.kept
    kwargs = {"k": 3, "amplitude": 2.0, "restarts": 2, "steps": 4, "anneal": 3, "seed": 0,
              "lr": 0.01, "batch": 8, "shots": 5, "query": 5, "fixed": fixed,
              "keep_tasks": 48} | overrides  # fmt: skip
    return run_distil(learner, learner.f_banks[k], learner.g_banks[k], family, **kwargs)


def delta_ratio(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """mean(a) / mean(b) and its 95% half-width by the delta method, written out in float64."""
    a, b = a.double(), b.double()
    r = a.sum() / b.sum()
    resid = a - r * b
    sd = math.sqrt(float(((resid - resid.mean()) ** 2).sum()) / (len(a) - 1))
    return float(r), 1.959964 * sd / math.sqrt(len(a)) / float(b.mean())


def test_the_distil_phase_keeps_a_pair_only_beyond_doubt_and_leaves_the_incumbent_untouched():
    learner, family, fixed = polish_setup()
    f, g = learner.f_banks[0], learner.g_banks[0]
    before = [b.state_dict() for b in (f, g)]
    phase = distil(learner, family, fixed)
    assert phase.slot == "d" and len(phase.fits) == 3 and len(phase.agreement) == 3
    incumbent = pool_learner(learner, [f], [g], anneal=1)
    incumbent.amplitude.fill_(2.0)
    assert phase.fits[0] == pytest.approx(fixed_fits(incumbent, fixed["fit"])[0], rel=1e-6)
    gen = torch.Generator().manual_seed(derive_seed(0, "restart_banks", "distil_keep", 3))
    keep = family.sample(48, shots=5, query=5, generator=gen, split="train")  # its own tasks
    assert phase.query[0] == pytest.approx(routed_query(incumbent, keep), rel=1e-6)
    best = 1 + min(range(2), key=phase.query[1:].__getitem__)
    assert phase.ratio[0] == pytest.approx(phase.query[best] / phase.query[0], rel=1e-9)
    assert phase.kept == (best if phase.ratio[0] + phase.ratio[1] < 1 else 0)
    assert phase.record()["query"] == phase.query
    assert phase.record()["query_ratio"] == phase.ratio
    if phase.kept:
        assert not same_bank(phase.f, f) and not same_bank(phase.g, g)  # fresh banks, both
        assert phase.amplitude is not None and math.isfinite(phase.amplitude)
    for b, state in zip((f, g), before, strict=True):
        assert all(torch.equal(b.state_dict()[k], v) for k, v in state.items())
    # a phase depends on its index and seed only; the fresh banks on the index
    again = distil(learner, family, fixed)
    assert again.fits == phase.fits and same_bank(again.f, phase.f)
    other = distil(learner, family, fixed, k=4)
    assert other.fits[1:] != phase.fits[1:] and other.query[0] != phase.query[0]  # tasks too
    assert distil(learner, family, fixed, keep_tasks=40).query != phase.query  # its own tasks


def heavy(n: int, seed: int) -> torch.Tensor:
    """Per-task errors with a heavy tail, as a routed query MSE has."""
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).exp()


def test_keep_if_better_against_the_delta_method_written_out():
    incumbent = heavy(2000, 0)
    clear = 0.6 * incumbent * heavy(2000, 1) ** 0.1  # 40% lower, paired
    noisy = 0.96 * incumbent.mean() * heavy(2000, 2) / heavy(2000, 2).mean()  # 4% lower, unpaired
    kept, ratio = keep_if_better([incumbent, noisy, clear])
    want = delta_ratio(clear, incumbent)
    assert kept == 2 and ratio[0] == pytest.approx(want[0], rel=1e-12)
    assert ratio[1] == pytest.approx(want[1], rel=1e-4) and want[0] + want[1] < 1
    kept, ratio = keep_if_better([incumbent, noisy])  # the lowest mean, but not beyond doubt
    r, half = delta_ratio(noisy, incumbent)
    assert kept == 0 and r < 1 < r + half and ratio[0] == pytest.approx(r, rel=1e-12)
    # on 400 tasks the same 40% is still clear; on 3 tasks of this tail it is not
    assert keep_if_better([incumbent[:400], clear[:400]])[0] == 1
    few = keep_if_better([incumbent[:3], clear[:3]])
    assert few[0] == (1 if sum(delta_ratio(clear[:3], incumbent[:3])) < 1 else 0)


def test_keep_if_better_skips_pairs_that_diverged_and_keeps_the_incumbent_on_a_tie():
    incumbent = heavy(500, 0)
    gone = torch.full_like(incumbent, math.nan)
    assert keep_if_better([incumbent, gone, 0.5 * incumbent])[0] == 2
    assert keep_if_better([incumbent, gone]) == (0, None)
    assert keep_if_better([incumbent, incumbent.clone()])[0] == 0  # equal: the incumbent
    worse = keep_if_better([incumbent, 1.5 * incumbent])
    assert worse[0] == 0 and worse[1][0] == pytest.approx(1.5)
    assert keep_if_better([incumbent]) == (0, None)
    spoilt = 0.5 * incumbent
    spoilt[7] = math.inf  # one task gone wrong: not a candidate
    assert keep_if_better([incumbent, spoilt, 0.9 * incumbent])[0] == 2
    broken = incumbent.clone()
    broken[3] = math.nan  # the incumbent gone wrong on one task: any finite pair replaces it
    kept, ratio = keep_if_better([broken, 1.2 * incumbent])
    assert kept == 1 and math.isnan(ratio[0])


def test_the_students_learn_from_the_teachers_labels(monkeypatch):
    learner, family, fixed = polish_setup()
    seen: list[torch.Tensor] = []
    original = block_restarts.AnnealedSumLearner.meta_step

    def spy(self, batch, **kwargs):
        if self.routing == "descriptor":
            seen.append(batch.descriptor)
        return original(self, batch, **kwargs)

    monkeypatch.setattr(block_restarts.AnnealedSumLearner, "meta_step", spy)
    distil(learner, family, fixed)
    assert len(seen) == 4 and all(d.shape == (8, 4) for d in seen)  # every step, labelled


def test_a_distil_phase_whose_students_fit_worse_keeps_the_incumbent(monkeypatch):
    from metacompose.training import distil_phase

    def flatten(pool, *args, **kwargs):  # students gone wrong: every candidate flat
        with torch.no_grad():
            for bank in (*pool.f_banks, *pool.g_banks):
                bank.table.zero_()
            pool.amplitude.fill_(1.0)

    learner, family, fixed = polish_setup()
    monkeypatch.setattr(distil_phase, "anneal_pool", flatten)
    phase = distil(learner, family, fixed)
    assert phase.kept == 0 and min(phase.query[1:]) > phase.query[0]
    assert same_bank(phase.f, learner.f_banks[0]) and phase.amplitude is None


def test_the_rule_is_the_routed_query_mse_not_the_fit(monkeypatch):
    from metacompose.training import distil_phase

    learner, family, fixed = polish_setup()
    honest = distil(learner, family, fixed)
    order = sorted(range(3), key=honest.fits.__getitem__, reverse=True)  # the worst fit first
    faked = [0.0] * 3
    for rank, r in enumerate(order):
        faked[r] = 0.01 * (rank + 1)  # the worst fit gets the lowest query MSE
    shape = heavy(48, 7)  # every replica's errors a multiple of one shape: a tight interval
    monkeypatch.setattr(distil_phase, "routed_query_mse",
                        lambda pool, tasks: [v * shape for v in faked])  # fmt: skip
    phase = distil(learner, family, fixed)
    assert phase.kept == order[0] and phase.fits == honest.fits
