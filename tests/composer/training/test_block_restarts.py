"""The block restarts' rule (metacompose.training.block_restarts): which replica a phase keeps."""

from __future__ import annotations

import math
import random

import pytest

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
