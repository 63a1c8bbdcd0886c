"""Soundness self-test on random small networks (backs ``metacompose verify --self-test``).

For each random network pair (1-D or 2-D input, MLP or residual graph, ReLU / tanh / sin
activations in turn, random adaptation; plus ``n_conv`` tiny conv nets on 1x8x8 images, every
other one kept as structured Conv2d / MaxPool2d nodes instead of its dense lowering, with
deviation and prediction-stability claims on Linf balls, audited by sampling and PGD),
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
from metacompose.symbolic.conv import avgpool_affine, conv2d_affine, maxpool_nodes
from metacompose.symbolic.exact_tier import exact_check
from metacompose.symbolic.image_ops import Conv2d, MaxPool2d, avgpool_conv
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
    LinfBallDomain,
    LipschitzBound,
    OutputRange,
    PredictionStability,
    StabilitySpec,
    domain_boxes,
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
    """Independent lower bound on max objective: dense grid (1-D / 2-D; 2,000 uniform samples
    otherwise) plus gradient ascent from 17 starts."""
    n = lo.shape[1]
    if n <= 2:
        k = 4001 if n == 1 else 121
        axes = [
            torch.linspace(float(lo[0, i]), float(hi[0, i]), k, dtype=torch.float64)
            for i in range(n)
        ]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, n)
    else:  # images: uniform samples instead of a grid
        u = torch.rand(2000, n, generator=gen, dtype=torch.float64)
        grid = lo[0] + u * (hi[0] - lo[0])
    with torch.no_grad():
        g = float(objective.value(pair, grid).max())
    _, v = pgd_maximize(
        lambda x: objective.value(pair, x), lo, hi, starts_per_box=16, steps=20, generator=gen
    )
    return max(g, v)


def random_conv_pair(
    gen: torch.Generator, *, scale: float, n_classes: int = 3, structured: bool = False
) -> NetworkPair:
    """A tiny conv net on 1x8x8 images (conv 3x3 -> ReLU -> max-pool 2 -> conv 3x3 -> ReLU ->
    avg-pool 2 -> Affine to ``n_classes``), lowered by :mod:`~metacompose.symbolic.conv` (or
    with ``structured`` kept as Conv2d / MaxPool2d nodes), and a perturbed twin."""

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    w = [rnd(2, 1, 3, 3) / 2, rnd(2, 2, 3, 3) / 3, rnd(n_classes, 8) / 2]
    b = [rnd(2) * 0.2, rnd(2) * 0.2, rnd(n_classes) * 0.2]

    def build_structured(ws, bs) -> Network:
        c1 = Conv2d(ws[0], bs[0], (1, 8, 8), 1, 1)
        p1 = MaxPool2d(c1.out_shape, 2, 2)
        c2 = Conv2d(ws[1], bs[1], p1.out_shape, 1, 1)
        nodes = [
            Node("c1", c1, (INPUT,)),
            Node("r1", ReLU(), ("c1",)),
            Node("p1", p1, ("r1",)),
            Node("c2", c2, ("p1",)),
            Node("r2", ReLU(), ("c2",)),
            Node("p2", avgpool_conv(c2.out_shape, 2, 2), ("r2",)),
            Node("out", Affine(ws[2], bs[2]), ("p2",)),
        ]
        return Network(input_dim=64, nodes=nodes)

    def build(ws, bs) -> Network:
        if structured:
            return build_structured(ws, bs)
        c1, shape = conv2d_affine(ws[0], bs[0], (1, 8, 8), padding=1)
        nodes = [Node("c1", c1, (INPUT,)), Node("r1", ReLU(), ("c1",))]
        pool, h, shape = maxpool_nodes("p1", "r1", shape, 2)
        c2, shape = conv2d_affine(ws[1], bs[1], shape, padding=1)
        nodes += [*pool, Node("c2", c2, (h,)), Node("r2", ReLU(), ("c2",))]
        avg, shape = avgpool_affine(shape, 2)
        nodes += [Node("p2", avg, ("r2",)), Node("out", Affine(ws[2], bs[2]), ("p2",))]
        return Network(input_dim=64, nodes=nodes)

    wa = [x + scale * rnd(*x.shape) for x in w]
    ba = [x + scale * rnd(*x.shape) for x in b]
    return NetworkPair(meta=build(w, b), adapted=build(wa, ba))


def _conv_checks(s: SelfTestSummary, i: int, gen: torch.Generator, timeout_s: float) -> None:
    """Deviation and prediction-stability claims on an Linf ball around random images."""
    structured = i % 2 == 1  # every other net keeps Conv2d / MaxPool2d nodes
    scale = float(torch.rand(1, generator=gen)) * 0.1
    pair = random_conv_pair(gen, scale=scale, structured=structured)
    kind = "conv nodes" if structured else "conv"
    s.n_by_activation[kind] = s.n_by_activation.get(kind, 0) + 1
    s.n_networks += 1
    centres = torch.rand(3, 64, generator=gen, dtype=torch.float64)
    for radius in (0.002, 0.02, 0.1):
        lo, hi = centres - radius, centres + radius
        dev = Objective("deviation", 0)
        true_dev = max(attack_max(pair, dev, lo[b : b + 1], hi[b : b + 1], gen) for b in range(3))
        for f in (0.9, 1.1):
            spec = StabilitySpec(
                domain=LinfBallDomain(radius=radius),
                deviation=DeviationBound(max_abs=(max(f * true_dev, 1e-12),)),
                prediction=PredictionStability(agree_with_meta=True),
            )
            rep = certify(pair, spec, tier="fast", points=centres, timeout_s=timeout_s, seed=i)
            xlo, xhi = domain_boxes(spec.domain, centres)
            for r in rep.results:
                tag = f"net{i} ({kind}) r={radius} x{f} {r.claim}"
                if r.claim.startswith("deviation[0]"):
                    _audit(s, pair, spec, r, xlo, xhi, true_dev, 0.0, 0.0, tag)
                elif r.claim.startswith("prediction_stable"):
                    _audit_stable(s, pair, r, xlo, xhi, gen, tag)
                elif r.claim.startswith("prediction_agrees"):
                    s.n_claims += 1
                    _count(s, r, pair, xlo, xhi, tag)


def _audit_stable(s, pair, r, xlo, xhi, gen, tag) -> None:
    """Proved: no sampled or PGD point changes the top-1 class; violated: its point does."""
    s.n_claims += 1
    b = int(r.claim[len("prediction_stable[") : -1])
    lo, hi = xlo[b : b + 1], xhi[b : b + 1]
    with torch.no_grad():
        c = int(pair.adapted(0.5 * (lo + hi)).argmax())
    if isinstance(r.outcome, Proved):
        s.n_proved += 1
        u = torch.rand(2000, lo.shape[1], generator=gen, dtype=torch.float64)
        with torch.no_grad():
            y = pair.adapted(lo + u * (hi - lo))
        beaten = bool((y.argmax(1) != c).any())
        for j in range(pair.output_dim):
            if j != c:
                _, v = pgd_maximize(
                    lambda x, j=j: pair.adapted(x)[:, j] - pair.adapted(x)[:, c],
                    lo,
                    hi,
                    starts_per_box=8,
                    steps=20,
                    generator=gen,
                )
                beaten = beaten or v >= 0
        if beaten:
            s.unsound.append(tag)
    else:
        _count(s, r, pair, xlo, xhi, tag)


def _count(s, r, pair, xlo, xhi, tag) -> None:
    if isinstance(r.outcome, Proved):
        s.n_proved += 1
    elif isinstance(r.outcome, Violated):
        s.n_violated += 1
        ce = r.outcome.counterexample
        with torch.no_grad():
            ya = pair.adapted(ce.x.reshape(1, -1))[0]
            ym = pair.meta(ce.x.reshape(1, -1))[0]
        b = int(r.claim[r.claim.index("[") + 1 : -1])
        with torch.no_grad():
            c = int(pair.adapted(0.5 * (xlo[b : b + 1] + xhi[b : b + 1])).argmax())
        if r.claim.startswith("prediction_stable"):
            ok = bool((torch.cat([ya[:c], ya[c + 1 :]]) >= ya[c]).any())
        else:
            ok = int(ya.argmax()) != int(ym.argmax())
        if not (ok and in_boxes(ce.x, xlo[b : b + 1], xhi[b : b + 1])):
            s.not_reproduced.append(tag)
    else:
        s.n_unknown += 1


def self_test(
    n_networks: int = 20,
    seed: int = 0,
    *,
    n_conv: int = 0,
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
            on_progress(i + 1, n_networks + n_conv)
    for i in range(n_conv):
        _conv_checks(s, n_networks + i, gen, timeout_s)
        if on_progress is not None:
            on_progress(n_networks + i + 1, n_networks + n_conv)
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
