"""Can K shots tell a task's composition apart at all? Three probes that need no trained learner.

    python scripts/probe_routing.py --config configs/from_data_sums.yaml --probe warps
    python scripts/probe_routing.py --config configs/from_data.yaml --probe classifier
    python scripts/probe_routing.py --config configs/from_data.yaml --probe context

``warps``: every candidate is the family's *true* primitive at its middle parameter (p = 0.5), and a
task may move it only as the data-routed templates let it (``configs/from_data*.yaml``): an affine
input warp ``s x + t`` per slot (``--scale``: free scale in [1/3, 3]; else shift only) and an affine
output (amplitude per term, ``--offset``: plus a constant). The warps are found by a global grid
search (backfitting the two slots in turn), amplitudes by least squares. Each task is routed to the
pair with the lowest support MSE, leave-one-out MSE on the support set, or (a reference a router
cannot use at test time) query MSE. With perfect modules, does this freedom let K points tell the
pairs apart?

``context``: every candidate is the family's true primitive with its *own* per-task parameter (a
perfect CAVIA-style candidate ``f(x, c)``, as in ``configs/from_data_ctx.yaml``), amplitude and
offset by least squares. The parameters are found either globally (a grid of 41 values per slot) or
as an inner loop would: ``--local-steps`` gradient steps of ``--local-lr`` from the middle (0.5).
Does a local search find the parameter that makes the true pair fit best?

``classifier``: an amortised router alone: a set encoder over the support set, trained by
cross-entropy on the true (f, g) of seen pairs, scored on seen and held-out pairs. Does a router
that predicts the composition from the data generalise to combinations it never saw?

Prints one line per routing rule: accuracy of f, of g, and joint, on held-out pairs (and seen pairs
for the classifier).
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

from metacompose.build import build_family
from metacompose.cli.args import meta_steps, non_negative_int, positive_float, positive_int, seed
from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
from metacompose.config import load_config

Tensor = torch.Tensor


def primitives(family, i: int, j: int):
    """The family's i-th slot-f and j-th slot-g primitives (their formulas, from the registries)."""
    f_table, g_table = family.structure.registries
    return f_table[family.inner[i]], g_table[family.outer[j]]


def warp_grid(scale: bool) -> tuple[Tensor, Tensor]:
    """``(s, t)`` of every warp searched: 41 log-spaced scales in [1/3, 3] (or 1; 5.6% apart), 161
    shifts in [-4, 4] (0.05 apart)."""
    s = torch.exp(torch.linspace(math.log(1 / 3), math.log(3), 41)) if scale else torch.ones(1)
    s, t = torch.meshgrid(s, torch.linspace(-4.0, 4.0, 161), indexing="ij")
    return s.reshape(-1, 1, 1), t.reshape(-1, 1, 1)


def fit_linear(cols: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """Least-squares prediction of ``y`` (..., P) from ``cols`` (..., P, m) on the points with
    weight ``w`` (P,) 1, at every point; a tiny ridge keeps collinear columns solvable."""
    cw = cols * w[:, None]
    a = cw.transpose(-1, -2) @ cols
    ridge = 1e-5 * a.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None] + 1e-8
    coef = torch.linalg.solve(
        a + ridge * torch.eye(cols.shape[-1]), cw.transpose(-1, -2) @ y[..., None]
    )
    return (cols @ coef)[..., 0]


def best(cands: Tensor, fixed: list[Tensor], y: Tensor, w: Tensor, offset: bool) -> Tensor:
    """The column among ``cands`` (W, N, P) that, with the ``fixed`` columns (N, P each), fits ``y``
    best on the weighted points; returns it (N, P)."""
    cols = [cands] + [f[None].expand_as(cands) for f in fixed]
    if offset:
        cols.append(torch.ones_like(cands))
    pred = fit_linear(torch.stack(cols, -1), y[None].expand_as(cands), w)
    k = (((pred - y) ** 2) * w).sum(-1).argmin(0)
    return cands[k, torch.arange(cands.shape[1])]


def pair_prediction(family, i: int, j: int, x: Tensor, y: Tensor, w: Tensor, args) -> Tensor:
    """Prediction (N, P) of pair (i, j) fitted on the points with ``w`` = 1."""
    s, t = warp_grid(args.scale)
    half = torch.tensor(0.5)
    f, g = primitives(family, i, j)
    ones = torch.ones_like(y)
    if family.structure.name == "sum":
        a, c = f(s * x + t, half), g(s * x + t, half)  # (W, N, P)
        fa = best(a, [], y, w, args.offset)
        for _ in range(3):
            gc = best(c, [fa], y, w, args.offset)
            fa = best(a, [gc], y, w, args.offset)
        cols = [fa, gc] + ([ones] if args.offset else [])
    else:  # chain: pre-warp of x, then g of f, amplitude (and offset) after
        cols = [best(g(f(s * x + t, half), half), [], y, w, args.offset)]
        cols += [ones] if args.offset else []
    return fit_linear(torch.stack(cols, -1), y, w)


def probe_warps(family, args) -> None:
    gen = torch.Generator().manual_seed(args.seed)
    b = family.sample(args.tasks, shots=args.shots, query=15, generator=gen, split="test",
                      subset="held_out")  # fmt: skip
    x = torch.cat([b.support_x, b.query_x], 1)[..., 0]
    y = torch.cat([b.support_y, b.query_y], 1)[..., 0]
    k, nf, ng = args.shots, len(family.inner), len(family.outer)
    sup = (torch.arange(x.shape[1]) < k).float()
    rules = ("support", "leave-one-out", "query") if args.loo else ("support", "query")
    score = {r: torch.zeros(nf * ng, args.tasks) for r in rules}
    for i in range(nf):
        for j in range(ng):
            err = (pair_prediction(family, i, j, x, y, sup, args) - y) ** 2
            score["support"][i * ng + j] = err[:, :k].mean(1)
            score["query"][i * ng + j] = err[:, k:].mean(1)
            for m in range(k if args.loo else 0):
                drop = sup.clone()
                drop[m] = 0
                pred = pair_prediction(family, i, j, x, y, drop, args)
                score["leave-one-out"][i * ng + j] += (pred[:, m] - y[:, m]) ** 2 / k
    for rule, sc in score.items():
        pick = sc.argmin(0)
        report(f"warps by {rule}", "held_out", pick // ng, pick % ng, b.info)


def context_loss(family, i: int, j: int, x: Tensor, y: Tensor, p: Tensor, q: Tensor) -> Tensor:
    """Support MSE (..., N) of pair (i, j) at parameters ``p``, ``q`` (..., N, 1), amplitude(s)
    and offset by least squares."""
    f, g = primitives(family, i, j)
    terms = family.structure.terms(f, g, x, p, q)
    shape = torch.broadcast_shapes(x.shape, *(t.shape for t in terms))
    cols = torch.stack([t.expand(shape) for t in terms] + [torch.ones(shape)], -1)
    pred = fit_linear(cols, y.expand(shape), torch.ones(x.shape[-1]))
    return ((pred - y) ** 2).mean(-1)


def probe_context(family, args) -> None:
    gen = torch.Generator().manual_seed(args.seed)
    b = family.sample(args.tasks, shots=args.shots, query=0, generator=gen, split="test",
                      subset="held_out")  # fmt: skip
    x, y = b.support_x[..., 0], b.support_y[..., 0]
    nf, ng = len(family.inner), len(family.outer)
    grid = torch.linspace(0.0, 1.0, 41)
    gp, gq = (v.reshape(-1, 1, 1) for v in torch.meshgrid(grid, grid, indexing="ij"))
    score = {r: torch.zeros(nf * ng, args.tasks) for r in ("global", "local")}
    for i in range(nf):
        for j in range(ng):
            score["global"][i * ng + j] = context_loss(family, i, j, x, y, gp, gq).amin(0)
            p = torch.full((args.tasks, 1), 0.5, requires_grad=True)
            q = torch.full((args.tasks, 1), 0.5, requires_grad=True)
            for _ in range(args.local_steps):
                dp, dq = torch.autograd.grad(
                    context_loss(family, i, j, x, y, p, q).sum(), (p, q), allow_unused=True
                )
                with torch.no_grad():
                    p -= args.local_lr * dp
                    q -= args.local_lr * (0 if dq is None else dq)
            with torch.no_grad():
                score["local"][i * ng + j] = context_loss(family, i, j, x, y, p, q)
    for rule, sc in score.items():
        pick = sc.argmin(0)
        report(f"context, {rule} search", "held_out", pick // ng, pick % ng, b.info)


class SetClassifier(nn.Module):
    """DeepSets over ``(x, y / std(y))`` pairs: mean and max pooling, logits of f then g."""

    def __init__(self, *, hidden: int, nf: int, ng: int) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.rho = nn.Sequential(nn.ReLU(), nn.Linear(2 * hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, nf + ng))  # fmt: skip

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        z = self.phi(torch.cat([x / x.abs().amax(), y / (y.std(1, keepdim=True) + 1e-6)], -1))
        return self.rho(torch.cat([z.mean(1), z.amax(1)], -1))


def probe_classifier(family, args) -> None:
    nf, ng = len(family.inner), len(family.outer)
    model = SetClassifier(hidden=128, nf=nf, ng=ng)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(args.seed)
    ce = nn.functional.cross_entropy
    for _ in range(args.steps):
        b = family.sample(128, shots=args.shots, query=0, generator=gen, split="train")
        logits = model(b.support_x, b.support_y)
        loss = ce(logits[:, :nf], b.info["f"]) + ce(logits[:, nf:], b.info["g"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for subset in ("seen", "held_out"):
        b = family.sample(args.tasks, shots=args.shots, query=0, generator=gen, split="test",
                          subset=subset)  # fmt: skip
        with torch.no_grad():
            logits = model(b.support_x, b.support_y)
        pf, pg = logits[:, :nf].argmax(1), logits[:, nf:].argmax(1)
        report("classifier", subset, pf, pg, b.info)
        seen = sum((int(f), int(g)) in family.seen for f, g in zip(pf, pg)) / len(pf)
        print(f"{'':28s} {subset:9s} predicted pairs that are seen pairs: {seen:.3f}")


def report(rule: str, subset: str, pf: Tensor, pg: Tensor, info: dict) -> None:
    hit_f, hit_g = pf == info["f"], pg == info["g"]
    print(f"{rule:28s} {subset:9s} acc f {hit_f.float().mean():.3f}  g {hit_g.float().mean():.3f}  "
          f"joint {(hit_f & hit_g).float().mean():.3f}", flush=True)  # fmt: skip


def main() -> None:
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="a config of the compositional family")
    p.add_argument("--probe", choices=("warps", "context", "classifier"), required=True)
    p.add_argument("--shots", type=positive_int, default=10)
    p.add_argument(
        "--tasks", type=positive_int, default=100, help="meta-test tasks (held-out pairs)"
    )
    p.add_argument("--scale", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--offset", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--loo", action=argparse.BooleanOptionalAction, default=True,
                   help="warps: also route by leave-one-out (K times the cost)")  # fmt: skip
    p.add_argument("--steps", type=meta_steps, default=4000, help="classifier training steps")
    p.add_argument(
        "--local-steps", type=non_negative_int, default=5, help="context: local search steps"
    )
    p.add_argument(
        "--local-lr", type=positive_float, default=0.05, help="context: local search step"
    )
    p.add_argument("--seed", type=seed, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    if load_config(args.config).task.family != "compositional":
        p.error(f"--config {args.config}: needs a config of the compositional family")
    cfg = load_config(args.config, ["task.args.check.min_distinct=0"])
    family = build_family(cfg.task)
    print(f"{args.config}: {family.structure.name}, inner {list(family.inner)}, outer "
          f"{list(family.outer)}, K={args.shots}")  # fmt: skip
    probe = {"warps": probe_warps, "context": probe_context, "classifier": probe_classifier}
    probe[args.probe](family, args)


if __name__ == "__main__":
    run_script(main)
