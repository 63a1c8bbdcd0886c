"""Pilot (issue #15): routing from data by deterministic annealing over per-task contexts.

    python scripts/pilot_annealed_routing.py --mode data --steps 1000 --grid 15    # ~20 min
    python scripts/pilot_annealed_routing.py --mode descriptor --steps 300         # true pairs given

Sum structure only (``configs/from_data_sums.yaml`` by default). Each candidate is a learned shape
along a learned one-dimensional warp line, ``h_k((1 + s_k c) x + t_k c)``: ``h_k`` an RBF expansion
(linear in its weights), ``c`` a per-task context on a global grid in [-1, 1]. A task's fit of a
pair at a context pair is closed form (amplitudes and offset by least squares). Training is Adam on
``-tau logsumexp(-MSE / tau)`` over the grid (and over the pairs, ``--mode data``; over the true
pair only, ``--mode descriptor``), ``tau`` annealed geometrically from ``--tau0`` to ``--tau1``
over 80% of the steps. At evaluation every pair and context is fitted on the support set and the
lowest support MSE wins; prints routing purity (NMI, matched accuracy) on seen and held-out pairs.
Not a learner of the library: measured in docs/experiments/router_pilots.md (2026-12-03).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from metacompose.build import build_family
from metacompose.config import load_config
from metacompose.router.metrics import routing_purity

Tensor = torch.Tensor


class WarpLineBank(torch.nn.Module):
    """``count`` candidates ``h_k((1 + s_k c) x + t_k c)``, ``h_k`` ``centres`` Gaussian bumps."""

    def __init__(self, *, count: int, centres: int, grid: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(count, centres) * 0.3)
        self.s = torch.nn.Parameter((torch.rand(count) - 0.5) * 0.4)
        self.t = torch.nn.Parameter((torch.rand(count) - 0.5) * 2.0)
        self.register_buffer("centres", torch.linspace(-9.0, 9.0, centres))
        self.register_buffer("contexts", torch.linspace(-1.0, 1.0, grid))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (N, P) -> every candidate at every context: (count, grid, N, P)."""
        s = self.s.clamp(-0.6, 0.6).view(-1, 1, 1, 1)
        c = self.contexts.view(1, -1, 1, 1)
        u = (1 + s * c) * x + self.t.view(-1, 1, 1, 1) * c
        width = self.centres[1] - self.centres[0]
        basis = torch.exp(-0.5 * ((u[..., None] - self.centres) / width) ** 2)
        return torch.einsum("cgnpm,cm->cgnp", basis, self.w)


def pair_mse(f: Tensor, g: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """MSE on the points with weight ``w`` (P,) of the least-squares fit ``a f + b g + o``: every
    context pair, ``f`` (G, N, P), ``g`` (G, N, P) -> (G, G, N)."""
    f, g = torch.broadcast_tensors(f[:, None], g[None, :])
    cols = torch.stack([f, g, torch.ones_like(f)], -1) * w[:, None]
    gram = cols.transpose(-1, -2) @ cols + 1e-4 * torch.eye(3)
    coef = torch.linalg.solve(gram, cols.transpose(-1, -2) @ (y * w)[..., None])
    return (((cols @ coef)[..., 0] - y * w) ** 2).sum(-1) / w.sum()


def all_pairs(banks, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """MSE of every (f, g) pair at every context pair: (F * G_, grid, grid, N)."""
    ff, gg = banks[0](x), banks[1](x)
    return torch.stack(
        [pair_mse(ff[i], gg[j], y, w) for i in range(len(ff)) for j in range(len(gg))]
    )


def train(family, banks, args) -> None:
    opt = torch.optim.Adam([p for b in banks for p in b.parameters()], lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    ng, start = len(family.outer), time.time()
    for step in range(args.steps):
        tau = args.tau0 * (args.tau1 / args.tau0) ** min(1.0, step / (0.8 * args.steps))
        b = family.sample(args.batch, shots=10, query=15, generator=gen, split="train")
        x = torch.cat([b.support_x, b.query_x], 1)[..., 0]
        y = torch.cat([b.support_y, b.query_y], 1)[..., 0]
        mse = all_pairs(banks, x, y, torch.ones(x.shape[1]))  # (pairs, G, G, N)
        if args.mode == "descriptor":
            mse = mse[b.info["f"] * ng + b.info["g"], ..., torch.arange(args.batch)]
        else:
            mse = mse.permute(3, 0, 1, 2)
        mse = mse.reshape(args.batch, -1)
        loss = (-tau * torch.logsumexp(-mse / tau, 1) + tau * math.log(mse.shape[1])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            hard = float(mse.detach().min(1).values.mean())
            print(
                f"step {step} tau {tau:.4f} best-fit MSE {hard:.4f} ({time.time() - start:.0f} s)"
            )


@torch.no_grad()
def evaluate(family, banks, args) -> None:
    gen = torch.Generator().manual_seed(1000 + args.seed)
    nf, ng = len(family.inner), len(family.outer)
    for subset in ("seen", "held_out"):
        b = family.sample(200, shots=10, query=15, generator=gen, split="test", subset=subset)
        x = torch.cat([b.support_x, b.query_x], 1)[..., 0]
        y = torch.cat([b.support_y, b.query_y], 1)[..., 0]
        support = (torch.arange(x.shape[1]) < 10).float()
        best = all_pairs(banks, x, y, support).flatten(1, 2).amin(1).argmin(0)
        choices = {"f": (best // ng).tolist(), "g": (best % ng).tolist()}
        truth = {"f": b.info["f"].tolist(), "g": b.info["g"].tolist()}
        pur = routing_purity(choices, truth, family.factors, {"f": nf, "g": ng})
        slots = ", ".join(
            f"{k}: NMI {v['nmi']:.3f} acc {v['accuracy']:.3f}" for k, v in pur["slots"].items()
        )
        print(f"{subset:9s} joint NMI {pur['joint_nmi']:.3f}  ({slots})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/from_data_sums.yaml")
    p.add_argument("--mode", choices=("data", "descriptor"), default="data")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--grid", type=int, default=15, help="contexts per candidate")
    p.add_argument("--centres", type=int, default=64, help="RBF centres per shape")
    p.add_argument("--tau0", type=float, default=1.0)
    p.add_argument("--tau1", type=float, default=0.01)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    family = build_family(load_config(args.config, ["task.args.check.min_distinct=0"]).task)
    if family.structure.name != "sum":
        p.error(f"{args.config}: structure {family.structure.name!r}; this pilot fits sums only")
    banks = [
        WarpLineBank(count=len(names), centres=args.centres, grid=args.grid)
        for names in (family.inner, family.outer)
    ]
    train(family, banks, args)
    evaluate(family, banks, args)


if __name__ == "__main__":
    main()
