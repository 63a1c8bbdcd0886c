"""Each routing policy on its own, against an independent reference (brute force where it picks a
minimum), on hand-made routing problems."""

import itertools

import torch
import torch.nn.functional as F

from metacompose.router import (
    ArgmaxRouting,
    RelaxedRouting,
    RoutingProblem,
    SearchRouting,
    SupportSearchRouting,
    TemperatureSchedule,
    UniformRouting,
    balance_loss,
    gumbel_noise,
    mean_entropy,
    relaxed_route,
)
from metacompose.router.policies import annealed_pick

SIZES = {"inner": 3, "middle": 2, "outer": 4}
T = 9


def problem(*, step=0, seed=0, losses=None):
    g = torch.Generator().manual_seed(seed)
    logits = {s: torch.randn(T, n, generator=g, dtype=torch.float64) for s, n in SIZES.items()}
    k = 3 * 2 * 4
    losses = torch.rand(k, T, generator=g, dtype=torch.float64) if losses is None else losses
    return RoutingProblem(
        logits=logits, sizes=dict(SIZES), num_tasks=T, like=logits["inner"], step=step,
        generator=torch.Generator().manual_seed(seed + 1), joint_losses=lambda: losses,
    )  # fmt: skip


def brute_force_best(losses):
    """Per task, the joint choice (slot -> id) with the lowest loss, by a hand loop."""
    combos = list(itertools.product(*[range(n) for n in SIZES.values()]))
    best = []
    for t in range(T):
        k = min(range(len(combos)), key=lambda i: float(losses[i, t]))
        best.append(dict(zip(SIZES, combos[k])))
    return best


def test_uniform_weighs_every_candidate_equally():
    d = UniformRouting().decide(problem())
    for s, n in SIZES.items():
        torch.testing.assert_close(d.weights[s], torch.full((T, n), 1 / n, dtype=torch.float64))
    assert d.choice == {} and d.penalties == []


def test_argmax_is_the_one_hot_of_the_largest_logit():
    p = problem()
    d = ArgmaxRouting().decide(p)
    for s, lg in p.logits.items():
        for t in range(T):
            c = max(range(SIZES[s]), key=lambda i: float(lg[t, i]))
            assert int(d.choice[s][t]) == c
            assert d.weights[s][t].tolist() == [float(i == c) for i in range(SIZES[s])]


def test_relaxed_routing_uses_the_temperature_of_the_given_step_and_adds_the_health_terms():
    schedule = TemperatureSchedule(start=2.0, end=0.5, steps=10)
    policy = RelaxedRouting(schedule=schedule, balance_weight=0.3, entropy_weight=0.2)
    p = problem(step=4)
    d = policy.decide(p)
    g = torch.Generator().manual_seed(1)
    tau = 2.0 * (0.5 / 2.0) ** 0.4
    for s, lg in p.logits.items():
        ref = relaxed_route(
            lg, tau=tau, noise=gumbel_noise((T, SIZES[s]), g), straight_through=True
        )
        torch.testing.assert_close(d.weights[s], ref, rtol=0, atol=0)
    probs = [lg.softmax(-1) for lg in p.logits.values()]
    balance = 0.3 * sum(balance_loss(q) for q in probs) / 3
    entropy = 0.2 * sum(mean_entropy(q) for q in probs) / 3
    torch.testing.assert_close(d.penalties[0], balance)
    torch.testing.assert_close(d.penalties[1], entropy)
    assert RelaxedRouting(schedule=schedule).decide(problem()).penalties == []


def test_search_takes_the_lowest_loss_joint_choice_and_teaches_it_to_the_router():
    p = problem()
    then = ArgmaxRouting()
    d = SearchRouting(steps=3, weight=0.7, then=then).decide(p)
    best = brute_force_best(p.joint_losses())
    for s in SIZES:
        assert d.choice[s].tolist() == [b[s] for b in best]
        assert torch.equal(d.weights[s], F.one_hot(d.choice[s], SIZES[s]).double())
    ce = sum(F.cross_entropy(p.logits[s], d.choice[s]) for s in SIZES) / 3
    torch.testing.assert_close(d.penalties[0], 0.7 * ce)


def test_search_hands_over_after_its_steps():
    p = problem(step=3, losses=torch.full((24, T), float("nan")))  # never read
    d = SearchRouting(steps=3, weight=1.0, then=ArgmaxRouting()).decide(p)
    ref = ArgmaxRouting().decide(p)
    assert all(torch.equal(d.choice[s], ref.choice[s]) for s in SIZES) and d.penalties == []


def test_annealed_search_is_the_best_when_cold_and_spreads_when_hot():
    losses = torch.rand(24, 200, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    losses[torch.arange(200) % 24, torch.arange(200)] = 1e-3  # a clear best per task
    cold = annealed_pick(losses, 1e-4, torch.Generator().manual_seed(0))
    assert torch.equal(cold, losses.argmin(dim=0))
    hot = annealed_pick(losses, 1e4, torch.Generator().manual_seed(0))
    assert len(set(hot.tolist())) > 12  # near uniform over the 24 joint choices


def test_support_search_picks_the_lowest_loss_joint_choice():
    p = problem(seed=5)
    d = SupportSearchRouting().decide(p)
    best = brute_force_best(p.joint_losses())
    for s in SIZES:
        assert d.choice[s].tolist() == [b[s] for b in best]
        assert torch.equal(d.weights[s].argmax(-1), d.choice[s])
