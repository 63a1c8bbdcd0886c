"""The block restarts' rule (metacompose.training.block_restarts): which replica a phase keeps;
the polish phase."""

from __future__ import annotations

import copy
import math
import random

import pytest
from training_testing import REPO

from metacompose.training.block_restarts import agreement, pick


def test_pick_is_the_most_agreeing_of_the_fits_within_the_factor_brute_force():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 6)
        fits = [rng.choice([rng.uniform(0.001, 0.02), math.inf, math.nan]) for _ in range(n)]
        agree = [round(rng.uniform(0, 1), 1) for _ in range(n)]  # rounded: ties happen
        finite = [f for f in fits if math.isfinite(f)]
        ok = [
            i
            for i in range(n)
            if not finite or (math.isfinite(fits[i]) and fits[i] <= 1.5 * min(finite))
        ]
        want = min(i for i in ok if agree[i] == max(agree[j] for j in ok))  # ties: lower index
        assert pick(fits, agree, within=1.5) == want


def test_agreement_is_the_mean_nmi_with_the_others():
    a = [0, 0, 1, 1, 2, 2]
    renamed = [5, 5, 3, 3, 4, 4]  # the same partition: NMI 1
    other = [0, 1, 0, 1, 0, 1]  # independent of a on these six: NMI 0
    got = agreement([a, renamed, other])
    assert got[0] == pytest.approx(0.5, abs=1e-12)  # (1 + 0) / 2
    assert got[1] == pytest.approx(0.5, abs=1e-12)
    assert got[2] == pytest.approx(0.0, abs=1e-12)
    assert agreement([a]) == [1.0]


@pytest.mark.parametrize("offset", [True, False])
def test_the_restart_pool_fits_as_the_learner_does(offset):
    """The pool of a phase fits with the learner's offset or without it, as the learner was built
    (a pool that fitted an offset the learner has not would anneal candidates for another model)."""
    import torch

    from metacompose.algorithms.annealed_sum_builder import annealed_sum_learner
    from metacompose.models import mlp_graph
    from metacompose.training.block_restarts import restart_pool

    torch.manual_seed(0)
    learner = annealed_sum_learner(encoder=mlp_graph(hidden=[2]), targets=1, classification=False,
                                   knots=12, contexts=3, eval_contexts=5, offset=offset)  # fmt: skip
    pool = restart_pool(learner, learner.f_banks[0], learner.g_banks[0], slot="f", restarts=2,
                        anneal=10)  # fmt: skip
    assert pool.offset is offset
    x = torch.rand(4, 10, 1) * 6 - 3
    fast, _ = pool.adapt(x, torch.sin(x) + 2.0)
    assert bool((fast["coef"][:, 2] == 0).all()) is not offset


def polish_setup():
    """A small annealed learner (its kept replica trained a few steps) and the sums family."""
    import torch

    from metacompose.algorithms.annealed_sum_builder import annealed_sum_learner
    from metacompose.build import build_family
    from metacompose.config import load_config
    from metacompose.models import mlp_graph
    from metacompose.training.block_restarts import anneal_pool, fixed_tasks

    cfg = load_config(REPO / "configs" / "from_data_sums_annealed.yaml", [])
    family = build_family(cfg.task)
    torch.manual_seed(0)
    args = {"candidates": [2, 2], "knots": 16, "contexts": 5, "eval_contexts": 5, "replicas": 1,
            "tau_start": 1.0, "tau_end": 0.05, "anneal_steps": 4, "offset": False}  # fmt: skip
    learner = annealed_sum_learner(encoder=mlp_graph(hidden=[2]), targets=1,
                                   classification=False, **args)  # fmt: skip
    anneal_pool(learner, family, steps=4, lr=0.01, batch=8, shots=5, query=5,
                generator=torch.Generator().manual_seed(1), desc="t")  # fmt: skip
    fixed = fixed_tasks(family, seed=0, shots=5, query=5, fit_tasks=16, agree_tasks=16)
    return learner, family, fixed


def polish(learner, family, fixed, **overrides):
    from metacompose.training.block_restarts import run_polish

    k = learner.kept
    kwargs = {"k": 2, "amplitude": 2.0, "steps": 5, "seed": 0, "lr": 0.01, "batch": 8,
              "shots": 5, "query": 5, "fixed": fixed} | overrides  # fmt: skip
    return run_polish(learner, learner.f_banks[k], learner.g_banks[k], family, **kwargs)


def same_bank(a, b) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[key], sb[key]) for key in sa)


def test_the_polish_learns_both_banks_at_tau_end_and_keeps_them_when_they_fit_better():
    from metacompose.training.block_restarts import fixed_fits, pool_learner

    learner, family, fixed = polish_setup()
    f, g = learner.f_banks[0], learner.g_banks[0]
    phase = polish(learner, family, fixed)
    assert phase.slot == "p" and len(phase.fits) == 2 and len(phase.agreement) == 2
    incumbent = pool_learner(learner, [f], [g], anneal=1)
    assert phase.fits[0] == pytest.approx(fixed_fits(incumbent, fixed["fit"])[0], rel=1e-6)
    assert phase.kept == int(phase.fits[1] < phase.fits[0]) == 1  # 5 steps on from 4: better
    assert not same_bank(phase.f, f) and not same_bank(phase.g, g)  # both banks learn
    assert phase.amplitude is not None and math.isfinite(phase.amplitude)
    assert phase.amplitude != 2.0  # the polished banks' own limit, not the incumbent's
    assert same_bank(learner.f_banks[0], f)  # the incumbent is not touched
    # no annealing: the learner's tau_start does not matter, its tau_end does
    hotter, colder = copy.deepcopy(learner), copy.deepcopy(learner)
    hotter.tau_start, colder.tau_end = 7.0, 0.01
    same_end = polish(hotter, family, fixed)
    assert same_bank(same_end.f, phase.f) and same_bank(same_end.g, phase.g)
    assert not same_bank(polish(colder, family, fixed).f, phase.f)
    # the phase's tasks depend on its index and seed only
    again = polish(learner, family, fixed)
    assert same_bank(again.f, phase.f) and again.fits == phase.fits
    assert not same_bank(polish(learner, family, fixed, k=3).f, phase.f)
    assert not same_bank(polish(learner, family, fixed, lr=0.02).f, phase.f)  # its own rate


def test_a_polish_that_fits_worse_keeps_the_incumbent_untouched(monkeypatch):
    import torch

    from metacompose.training import block_restarts

    def flatten(pool, *args, **kwargs):  # a polish gone wrong: every candidate flat
        with torch.no_grad():
            for bank in (*pool.f_banks, *pool.g_banks):
                bank.table.zero_()
            pool.amplitude.fill_(1.0)

    learner, family, fixed = polish_setup()
    f, g = learner.f_banks[0], learner.g_banks[0]
    monkeypatch.setattr(block_restarts, "anneal_pool", flatten)
    phase = polish(learner, family, fixed)
    assert phase.fits[1] > phase.fits[0] and phase.kept == 0
    assert same_bank(phase.f, f) and same_bank(phase.g, g) and phase.amplitude is None


def test_the_chain_restarts_as_a_chain():
    """A restart pool of the chain fits ``y = a g(f(x))`` as the learner does: its incumbent
    replica's fit on fixed tasks is the learner's own, and its fresh g-banks start as the
    learner's did (the line, for ``init: [random, identity]``)."""
    import torch

    from metacompose.algorithms.annealed_sum_builder import annealed_sum_learner
    from metacompose.build import build_family
    from metacompose.config import load_config
    from metacompose.models import mlp_graph
    from metacompose.training.block_restarts import fixed_fits, restart_pool, why_not_restartable

    family = build_family(load_config(REPO / "configs" / "from_data_chain_annealed.yaml", []).task)
    torch.manual_seed(0)
    learner = annealed_sum_learner(encoder=mlp_graph(hidden=[2]), targets=1, classification=False,
                                   structure="chain", init=["random", "identity"], knots=12,
                                   g_span=3.0, contexts=3, eval_contexts=5, replicas=1)  # fmt: skip
    assert why_not_restartable(learner) is None
    pool = restart_pool(learner, learner.f_banks[0], learner.g_banks[0], slot="g", restarts=2,
                        anneal=10)  # fmt: skip
    assert pool.structure == "chain"
    tasks = family.sample(16, shots=5, query=5, generator=torch.Generator().manual_seed(3),
                          split="train")  # fmt: skip
    fits = fixed_fits(pool, tasks)
    assert fits[0] == pytest.approx(fixed_fits(learner, tasks)[0], rel=1e-6)
    assert all(b.spec()["init"] == "identity" for b in pool.g_banks[1:])
    assert all(b.spec()["init"] == "random" for b in pool.f_banks)
    assert all(math.isfinite(f) for f in fits)
