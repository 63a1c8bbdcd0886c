"""Independent references for the symbolic tests: exact breakpoints, attacks, sinusoid pairs.

- :func:`exact_max_1d`: the exact maximum of an objective of a 1-D ReLU network pair, by
  enumerating every breakpoint in exact Fractions (the networks are linear between them).
- :func:`attack_max`: dense grid plus multi-start gradient ascent (smooth networks): a lower
  bound on the maximum that no proved claim may ever beat.
- :func:`sinusoid_pairs`: 1-40-40-1 networks fitted to a sinusoid and adapted to others by a few
  SGD steps on 10 support points (a stand-in for MAML sinusoid adaptations).
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import torch

from metacompose.symbolic.network import (
    INPUT,
    Activation,
    Add,
    Affine,
    Network,
    NetworkPair,
    ReLU,
)


def _eval_exact(net: Network, x: Fraction) -> dict[str, list[Fraction]]:
    vals = {INPUT: [x]}
    for name in net.order:
        nd = net.nodes[name]
        ins = [vals[i] for i in nd.inputs]
        op = nd.op
        if isinstance(op, Affine):
            w = [[Fraction(v) for v in row] for row in op.weight.tolist()]
            vals[name] = [
                sum((a * b for a, b in zip(row, ins[0])), Fraction(bi))
                for row, bi in zip(w, op.bias.tolist())
            ]
        elif isinstance(op, ReLU):
            vals[name] = [max(v, Fraction(0)) for v in ins[0]]
        elif isinstance(op, Activation):
            raise TypeError("exact breakpoints need a piecewise-linear network")
        elif isinstance(op, Add):
            vals[name] = [sum(t) for t in zip(*ins)]
        else:
            vals[name] = [v for part in ins for v in part]
    return vals


def exact_max_1d(pair: NetworkPair, kind: str, lo: float, hi: float, j: int = 0) -> Fraction:
    """Exact max over ``[lo, hi]`` of ``|f_a - f_m|_j`` (``"deviation"``) or ``f_a,j``
    (``"output_upper"``) for a 1-D ReLU pair: every ReLU input is linear between breakpoints."""
    pts = [Fraction(lo), Fraction(hi)]
    cache: dict[tuple[int, Fraction], dict] = {}

    def node_vals(which: int, x: Fraction) -> dict:
        key = (which, x)
        if key not in cache:
            cache[key] = _eval_exact((pair.meta, pair.adapted)[which], x)
        return cache[key]

    for which, net in enumerate((pair.meta, pair.adapted)):
        for name in net.order:
            if not isinstance(net.nodes[name].op, ReLU):
                continue
            src = net.nodes[name].inputs[0]
            new = []
            for a, b in itertools.pairwise(pts):
                va, vb = node_vals(which, a)[src], node_vals(which, b)[src]
                for p, q in zip(va, vb):
                    if (p < 0 < q) or (q < 0 < p):
                        new.append(a + (b - a) * p / (p - q))
            pts = sorted(set(pts) | set(new))
    best = None
    for x in pts:
        ya = node_vals(1, x)[pair.adapted.output][j]
        v = abs(ya - node_vals(0, x)[pair.meta.output][j]) if kind == "deviation" else ya
        best = v if best is None or v > best else best
    return best


def attack_max(value_fn, lo: torch.Tensor, hi: torch.Tensor, *, seed: int = 0) -> float:
    """Grid (4001 points in 1-D, 201^2 in 2-D) plus 64 gradient-ascent starts, 200 Adam steps."""
    n = lo.shape[-1]
    k = 4001 if n == 1 else 201
    axes = [torch.linspace(float(lo[i]), float(hi[i]), k, dtype=torch.float64) for i in range(n)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, n)
    with torch.no_grad():
        vals = value_fn(grid)
    best = float(vals.max())
    g = torch.Generator().manual_seed(seed)
    starts = grid[torch.argsort(vals, descending=True)[:32]]
    rand = lo + torch.rand(32, n, generator=g, dtype=torch.float64) * (hi - lo)
    x = torch.cat([starts, rand]).clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=float((hi - lo).max()) * 1e-3)
    for _ in range(200):
        opt.zero_grad()
        v = value_fn(x)
        best = max(best, float(v.detach().max()))
        (-v.sum()).backward()
        opt.step()
        with torch.no_grad():
            x.copy_(torch.minimum(torch.maximum(x, lo), hi))
    with torch.no_grad():
        return max(best, float(value_fn(x).max()))


def _mlp(ws: list, act: str) -> Network:
    layers = [(w.weight.detach(), w.bias.detach(), act) for w in ws[:-1]]
    layers.append((ws[-1].weight.detach(), ws[-1].bias.detach(), None))
    return Network.from_layers(layers, prefix="body.")


def sinusoid_pairs(
    n: int, *, act: str = "relu", width: int = 40, steps: int = 10, seed: int = 0
) -> list[NetworkPair]:
    """``n`` pairs: a 1-w-w-1 net fitted to 0.5 sin(2x) on [-5, 5] (1500 Adam steps), each
    adapted by ``steps`` SGD steps (lr 0.02) on 10 support points of a random sinusoid."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    lin = [torch.nn.Linear(1, width), torch.nn.Linear(width, width), torch.nn.Linear(width, 1)]
    lin = [m.double() for m in lin]
    fn = {"relu": torch.relu, "tanh": torch.tanh, "sin": torch.sin}[act]

    def fwd(params, x):
        h = x
        for i in range(3):
            h = h @ params[2 * i].T + params[2 * i + 1]
            if i < 2:
                h = fn(h)
        return h

    params = [p for m in lin for p in (m.weight, m.bias)]
    opt = torch.optim.Adam(params, lr=3e-3)
    x = torch.linspace(-5, 5, 200, dtype=torch.float64)[:, None]
    for _ in range(1500):
        opt.zero_grad()
        ((fwd(params, x) - 0.5 * torch.sin(2 * x)) ** 2).mean().backward()
        opt.step()
    meta = [p.detach().clone() for p in params]
    pairs = []
    for _ in range(n):
        amp = 0.1 + 4.9 * float(torch.rand(1, generator=g))
        phase = 3.14159 * float(torch.rand(1, generator=g))
        xs = -5 + 10 * torch.rand(10, 1, generator=g, dtype=torch.float64)
        ad = [p.clone().requires_grad_(True) for p in meta]
        for _ in range(steps):
            loss = ((fwd(ad, xs) - amp * torch.sin(xs + phase)) ** 2).mean()
            grads = torch.autograd.grad(loss, ad)
            ad = [(p - 0.02 * gr).detach().requires_grad_(True) for p, gr in zip(ad, grads)]
        pairs.append(NetworkPair(meta=_net(meta, act), adapted=_net(ad, act)))
    return pairs


def _net(params: list, act: str) -> Network:
    layers = [
        (params[0].detach(), params[1].detach(), act),
        (params[2].detach(), params[3].detach(), act),
        (params[4].detach(), params[5].detach(), None),
    ]
    return Network.from_layers(layers, prefix="body.")
