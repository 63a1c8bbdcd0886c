"""Soundness self-test on random small networks (backs ``metacompose verify --self-test``).

For each random network pair (1-D or 2-D input, MLP or residual graph, ReLU / tanh / sin
activations in turn, random adaptation),
the true maximum deviation is estimated by an independent attack (dense grid plus multi-start
gradient ascent); deviation claims are set at multiples of it and certified. Checked: nothing
``proved`` is beaten by the attack, every ``violated`` counterexample lies in the domain and
reproduces, and on 1-D inputs the exact tier (z3 for ReLU, interval branch and bound for smooth
activations) agrees with the grid away from the boundary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from metacompose.symbolic.attack import pgd_maximize
from metacompose.symbolic.certify import certify
from metacompose.symbolic.exact_tier import exact_check
from metacompose.symbolic.lipschitz_attack import lipschitz_attack
from metacompose.symbolic.network import (
    INPUT,
    Activation,
    Add,
    Affine,
    Network,
    NetworkPair,
    Node,
    ReLU,
)
from metacompose.symbolic.objectives import Objective, in_boxes
from metacompose.symbolic.results import Proved, Violated
from metacompose.symbolic.spec import (
    BoxDomain,
    DeviationBound,
    LipschitzBound,
    OutputRange,
    StabilitySpec,
)

FACTORS = (0.5, 0.9, 1.05, 1.5)
ACTIVATIONS = ("relu", "tanh", "sin")
"""Cycled over the networks (two networks each: a 1-D and a 2-D one)."""


@dataclass
class SelfTestSummary:
    n_networks: int = 0
    n_claims: int = 0
    n_proved: int = 0
    n_violated: int = 0
    n_unknown: int = 0
    unsound: list[str] = field(default_factory=list)
    not_reproduced: list[str] = field(default_factory=list)
    exact_disagreements: list[str] = field(default_factory=list)
    n_exact_checked: int = 0
    n_by_activation: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.unsound or self.not_reproduced or self.exact_disagreements)

    def lines(self) -> list[str]:
        return [
            f"networks {self.n_networks} "
            f"({', '.join(f'{k} {v}' for k, v in self.n_by_activation.items())}), "
            f"claims {self.n_claims}: proved {self.n_proved}, violated {self.n_violated}, "
            f"unknown {self.n_unknown}",
            f"proved-but-beaten {len(self.unsound)}, counterexamples not reproduced "
            f"{len(self.not_reproduced)}, exact-vs-grid disagreements "
            f"{len(self.exact_disagreements)} of {self.n_exact_checked}",
            f"{'PASS' if self.ok else 'FAIL'} in {self.seconds:.1f}s",
        ]


def random_pair(
    gen: torch.Generator,
    *,
    input_dim: int,
    width: int,
    residual: bool,
    scale: float,
    activation: str = "relu",
) -> NetworkPair:
    """A random network (plain or with a residual block) and a perturbed twin; ``activation`` is
    ``"relu"`` or a smooth kind (``"tanh"``, ``"sin"``, ...)."""

    def act() -> ReLU | Activation:
        return ReLU() if activation == "relu" else Activation(activation)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    w = [rnd(width, input_dim), rnd(width, width) / width**0.5, rnd(1, width) / width**0.5]
    b = [rnd(width) * 0.5, rnd(width) * 0.5, rnd(1) * 0.5]

    def build(ws, bs) -> Network:
        nodes = [
            Node("l0", Affine(ws[0], bs[0]), (INPUT,)),
            Node("r0", act(), ("l0",)),
            Node("l1", Affine(ws[1], bs[1]), ("r0",)),
            Node("r1", act(), ("l1",)),
        ]
        last = "r1"
        if residual:
            nodes.append(Node("skip", Add(), ("r1", "r0")))
            last = "skip"
        nodes.append(Node("out", Affine(ws[2], bs[2]), (last,)))
        return Network(input_dim=input_dim, nodes=nodes)

    wa = [x + scale * rnd(*x.shape) for x in w]
    ba = [x + scale * rnd(*x.shape) for x in b]
    return NetworkPair(meta=build(w, b), adapted=build(wa, ba))


def attack_max(
    pair: NetworkPair,
    objective: Objective,
    lo: torch.Tensor,
    hi: torch.Tensor,
    gen: torch.Generator,
) -> float:
    """Independent lower bound on max objective: dense grid plus gradient ascent from 17 starts."""
    n = lo.shape[1]
    k = 4001 if n == 1 else 121
    axes = [
        torch.linspace(float(lo[0, i]), float(hi[0, i]), k, dtype=torch.float64) for i in range(n)
    ]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, n)
    with torch.no_grad():
        g = float(objective.value(pair, grid).max())
    _, v = pgd_maximize(
        lambda x: objective.value(pair, x), lo, hi, starts_per_box=16, steps=20, generator=gen
    )
    return max(g, v)


def self_test(
    n_networks: int = 20,
    seed: int = 0,
    *,
    tiers: tuple[str, ...] = ("fast", "refine"),
    exact_every: int = 4,
    timeout_s: float = 5.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> SelfTestSummary:
    """Run the soundness checks on ``n_networks`` random pairs; see the module docstring.

    ``on_progress(done, n_networks)`` is called after each network (e.g. to advance a bar).
    """
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    s = SelfTestSummary()
    for i in range(n_networks):
        n = 1 + i % 2
        activation = ACTIVATIONS[(i // 2) % len(ACTIVATIONS)]
        pair = random_pair(
            gen,
            input_dim=n,
            width=int(torch.randint(3, 9, (1,), generator=gen)),
            residual=i % 3 == 2,
            scale=float(torch.rand(1, generator=gen)) * 0.3,
            activation=activation,
        )
        s.n_by_activation[activation] = s.n_by_activation.get(activation, 0) + 1
        lo = torch.full((1, n), -2.0, dtype=torch.float64)
        hi = torch.full((1, n), 2.0, dtype=torch.float64)
        dev = Objective("deviation", 0)
        true_dev = attack_max(pair, dev, lo, hi, gen)
        y_hi = attack_max(pair, Objective("output_upper", 0), lo, hi, gen)
        y_lo = -attack_max(pair, Objective("output_lower", 0), lo, hi, gen)
        s.n_networks += 1
        for f in FACTORS:
            spec = StabilitySpec(
                domain=BoxDomain(lower=tuple(lo[0].tolist()), upper=tuple(hi[0].tolist())),
                deviation=DeviationBound(max_abs=(max(f * true_dev, 1e-12),)),
                output_range=OutputRange(
                    lower=(y_lo - (f - 1) * abs(y_lo) - 1e-9 * (f > 1),),
                    upper=(y_hi + (f - 1) * abs(y_hi) + 1e-9 * (f > 1),),
                ),
                lipschitz=(LipschitzBound(norm="l2", bound=f * 10.0),),
            )
            for tier in tiers:
                rep = certify(pair, spec, tier=tier, timeout_s=timeout_s, seed=seed + i)
                for r in rep.results:
                    tag = f"net{i} ({activation}) x{f} {tier}"
                    _audit(s, pair, spec, r, lo, hi, true_dev, y_lo, y_hi, tag)
            if n == 1 and i % exact_every == 0 and abs(f - 1.0) >= 0.05:
                s.n_exact_checked += 1
                res = exact_check(pair, dev, f * true_dev, lo, hi, timeout_s=timeout_s)
                expect = Proved if f > 1 else Violated
                if not isinstance(res, expect) and res.status != "unknown":
                    s.exact_disagreements.append(f"net{i} ({activation}) x{f}: exact {res.status}")
        if on_progress is not None:
            on_progress(i + 1, n_networks)
    s.seconds = time.perf_counter() - t0
    return s


def _audit(s: SelfTestSummary, pair, spec, r, lo, hi, true_dev, y_lo, y_hi, tag: str) -> None:
    s.n_claims += 1
    o = r.outcome
    if isinstance(o, Proved):
        s.n_proved += 1
        if r.claim.startswith("deviation"):
            beaten = true_dev > r.limit
        elif r.claim.startswith("output_range"):
            beaten = y_hi > spec.output_range.upper[0] or y_lo < spec.output_range.lower[0]
        else:
            beaten = lipschitz_attack(pair.adapted, "l2", r.limit, lo, hi, n_starts=32) is not None
        if beaten:
            s.unsound.append(f"{tag} {r.claim}")
    elif isinstance(o, Violated):
        s.n_violated += 1
        ce = o.counterexample
        if r.claim.startswith("lipschitz"):
            with torch.no_grad():
                fx = pair.adapted(ce.x.reshape(1, -1))[0]
                fy = pair.adapted(ce.x2.reshape(1, -1))[0]
            q = float((fy - fx).norm() / (ce.x2 - ce.x).norm())
            ok = q > r.limit
        elif r.claim.startswith("deviation"):
            ok = (
                in_boxes(ce.x, lo, hi)
                and float(pair.deviation(ce.x.reshape(1, -1)).abs().max()) > r.limit
            )
        else:
            ok = in_boxes(ce.x, lo, hi)
        if not ok:
            s.not_reproduced.append(f"{tag} {r.claim}")
    else:
        s.n_unknown += 1
