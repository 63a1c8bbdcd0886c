"""Pilot (issue #15): routing from data by deterministic annealing over per-task contexts.

    # sums, routed from data (no descriptor anywhere): ~4 min a restart on one quiet core
    python scripts/pilot_annealed_routing.py --basis linear --centres 96 --spread 0.3 \
        --steps 3000 --tau1 0.003 --restarts 4 --seed 0
    python scripts/pilot_annealed_routing.py --mode descriptor --steps 300   # true pairs given
    python scripts/pilot_annealed_routing.py --config configs/from_data.yaml --grid 9 ...  # chain

Structures: the sum ``y = a f(x) + b g(x)`` (``configs/from_data_sums.yaml`` by default) and the
chain ``y = A g(f(x))``. Each candidate is a learned shape along a learned one-dimensional warp line,
``h_k((1 + s_k c) x + t_k c)``: ``h_k`` a table read by Gaussian bumps (``--basis rbf``) or linear
interpolation (``linear``, ~10x cheaper), ``c`` a per-task context on a global grid in [-1, 1]. A
task's fit of a pair at a context pair is closed form (amplitudes and offset by least squares).
Training is Adam on ``-tau logsumexp(-MSE / tau)`` over the grid (and over the pairs, ``--mode
data``; over the true pair only, ``--mode descriptor``), ``tau`` annealed geometrically from
``--tau0`` to ``--tau1`` over 80% of the steps; ``--spread`` < 1 starts a bank's candidates near one
shared random start, so that they split as ``tau`` falls. ``--restarts R`` trains R models and keeps
the one with the lowest best-fit MSE on 512 fixed *training* tasks (no held-out task is read). At
evaluation every pair and context (``--eval-grid``) is fitted on the support set and the lowest
support MSE wins; prints the query MSE of that fit and routing purity (NMI, matched accuracy; for
sums also as a set, since either bank may hold either slot's primitives) on seen and held-out pairs.
Not a learner of the library: measured in docs/experiments/router_pilots.md (2026-12-03).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from metacompose.algorithms.pair_fit import pair_fit_mse
from metacompose.build import build_family
from metacompose.cli.args import (
    meta_steps,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed,
)
from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
from metacompose.config import load_config
from metacompose.router.metrics import linear_assignment, normalized_mutual_info, routing_purity

Tensor = torch.Tensor


class WarpLineBank(torch.nn.Module):
    """``count`` candidates ``h_k((1 + s_k c) x + t_k c)``, ``h_k`` a table of ``centres`` values
    on [-9, 9], read as Gaussian bumps (``basis="rbf"``) or by linear interpolation (``"linear"``:
    two table entries per point instead of all of them, ~10x cheaper)."""

    def __init__(
        self, *, count: int, centres: int, grid: int, basis: str = "rbf", spread: float = 1.0
    ) -> None:
        """``spread`` < 1 starts the candidates near one shared random start (1: independent)."""
        super().__init__()
        self.basis = basis

        def draw(*shape: int) -> Tensor:
            shared = torch.randn(1, *shape[1:]).expand(shape)
            return (1 - spread) * shared + spread * torch.randn(shape)

        self.w = torch.nn.Parameter(draw(count, centres) * 0.3)
        self.s = torch.nn.Parameter(draw(count) * 0.12)
        self.t = torch.nn.Parameter(draw(count) * 0.6)
        self.register_buffer("centres", torch.linspace(-9.0, 9.0, centres))
        self.register_buffer("contexts", torch.linspace(-1.0, 1.0, grid))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (...) -> every candidate at every context: (count, grid, ...)."""
        ones = [1] * x.dim()
        s = self.s.clamp(-0.6, 0.6).view(-1, 1, *ones)
        c = self.contexts.view(1, -1, *ones)
        u = (1 + s * c) * x + self.t.view(-1, 1, *ones) * c
        width = self.centres[1] - self.centres[0]
        if self.basis == "rbf":
            basis = torch.exp(-0.5 * ((u[..., None] - self.centres) / width) ** 2)
            return torch.einsum("cgnpm,cm->cgnp", basis, self.w)
        count, m = self.w.shape
        pos = ((u - self.centres[0]) / width).clamp(0.0, m - 1.0001)
        i = pos.detach().floor().long()
        frac = pos - i
        flat = self.w.reshape(-1)
        i = i + (torch.arange(count) * m).view(-1, *[1] * (i.dim() - 1))
        low = flat[i]
        return low + frac * (flat[i + 1] - low)

    def roughness(self) -> Tensor:
        """Mean squared second difference of the tables."""
        return (self.w[:, 2:] - 2 * self.w[:, 1:-1] + self.w[:, :-2]).pow(2).mean()


def pair_mse(f: Tensor, g: Tensor, y: Tensor, w: Tensor, ridge: float = 1e-4) -> Tensor:
    """MSE on the points with weight ``w`` (P,) of the least-squares fit ``a f + b g + o``: every
    row of ``f`` (A, N, P) with every row of ``g`` (B, N, P) -> (A, B, N), in closed form
    (:func:`metacompose.algorithms.pair_fit.pair_fit_mse`)."""
    return pair_fit_mse(f, g, y, weight=w, ridge=ridge)


def chain_mse(h: Tensor, y: Tensor, w: Tensor, ridge: float = 1e-4) -> Tensor:
    """MSE on the points with weight ``w`` (P,) of the least-squares fit ``A h + o``, for every
    leading index of ``h`` (..., N, P) -> (..., N)."""
    total = w.sum()
    hc = h - (h * w).sum(-1, keepdim=True) / total
    yc = y - (y * w).sum(-1, keepdim=True) / total
    shh, shy, syy = (hc * hc * w).sum(-1), (hc * yc * w).sum(-1), (yc * yc * w).sum(-1)
    amp = shy / (shh + ridge)
    return (syy - 2 * amp * shy + amp**2 * shh).clamp_min(0.0) / total


def all_pairs(banks, x: Tensor, y: Tensor, w: Tensor, chain: bool = False) -> Tensor:
    """MSE of every (f, g) pair at every context pair: (F * G_, grid, grid, N). With one shared
    bank (``--shared``), of every unordered pair of distinct candidates: (K (K - 1) / 2, ...)."""
    if chain:  # y = A g(f(x)) + o: the outer bank reads every inner candidate's output
        ff = banks[0](x)  # (F, Cf, N, P)
        mse = chain_mse(banks[1](ff), y, w)  # (G, Cg, F, Cf, N)
        (ng, c, nf) = mse.shape[:3]
        return mse.permute(2, 0, 3, 1, 4).reshape(nf * ng, c, c, -1)
    if len(banks) == 1:
        ff = banks[0](x)
        (k, c) = ff.shape[:2]
        mse = pair_mse(ff.flatten(0, 1), ff.flatten(0, 1), y, w).view(k, c, k, c, -1)
        i, j = torch.triu_indices(k, k, offset=1)
        return mse[i, :, j]
    ff, gg = banks[0](x), banks[1](x)  # (F, C, N, P), (G_, C, N, P)
    (nf, c), ng = ff.shape[:2], gg.shape[0]
    mse = pair_mse(ff.flatten(0, 1), gg.flatten(0, 1), y, w).view(nf, c, ng, c, -1)
    return mse.permute(0, 2, 1, 3, 4).reshape(nf * ng, c, c, -1)


def train(family, banks, args) -> None:
    opt = torch.optim.Adam([p for b in banks for p in b.parameters()], lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    ng, start = len(family.outer), time.time()
    if args.mode == "descriptor" and len(banks) == 1:
        raise SystemExit("--mode descriptor needs the two slot banks (no --shared)")
    for step in range(args.steps):
        tau = args.tau0 * (args.tau1 / args.tau0) ** min(1.0, step / (0.8 * args.steps))
        if args.lr_decay:  # the last 20% (tau held at tau1): lr falls linearly to 5%
            late = max(0.0, step / args.steps - 0.8) / 0.2
            for group in opt.param_groups:
                group["lr"] = args.lr * (1 - 0.95 * late)
        b = family.sample(args.batch, shots=10, query=15, generator=gen, split="train")
        x = torch.cat([b.support_x, b.query_x], 1)[..., 0]
        y = torch.cat([b.support_y, b.query_y], 1)[..., 0]
        mse = all_pairs(banks, x, y, torch.ones(x.shape[1]), args.chain)  # (pairs, C, C, N)
        if args.mode == "descriptor":
            mse = mse[b.info["f"] * ng + b.info["g"], ..., torch.arange(args.batch)]
        else:
            mse = mse.permute(3, 0, 1, 2)
        mse = mse.reshape(args.batch, -1)
        loss = (-tau * torch.logsumexp(-mse / tau, 1) + tau * math.log(mse.shape[1])).mean()
        loss = loss + args.smooth * sum(b.roughness() for b in banks)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            hard = float(mse.detach().min(1).values.mean())
            print(
                f"step {step} tau {tau:.4f} best-fit MSE {hard:.4f} ({time.time() - start:.0f} s)"
            )


def shared_purity(pairs: Tensor, f: Tensor, g: Tensor, nf: int, k: int) -> str:
    """Routing purity of unordered candidate pairs ``pairs`` (N, 2) against the true ``(f, g)``
    (outer ids after the ``nf`` inner ones): joint NMI of the pair labels, and the accuracy after
    matching candidates to primitives one to one by their co-occurrence (Hungarian)."""
    truth = torch.stack([f, g + nf], 1)
    counts = torch.zeros(k, int(truth.max()) + 1)
    for a in range(2):
        for b in range(2):
            counts.index_put_((pairs[:, a], truth[:, b]), torch.ones(len(f)), accumulate=True)
    match = dict(linear_assignment(counts.numpy()))
    mapped = [{match.get(int(a)), match.get(int(b))} for a, b in pairs]
    acc_f = sum(int(t) in m for t, m in zip(truth[:, 0], mapped)) / len(f)
    acc_g = sum(int(t) in m for t, m in zip(truth[:, 1], mapped)) / len(f)
    joint = sum({int(t) for t in row} == m for row, m in zip(truth, mapped)) / len(f)
    nmi = normalized_mutual_info(map(tuple, pairs.tolist()), map(tuple, truth.tolist()))
    return f"joint NMI {nmi:.3f}  (matched: f {acc_f:.3f}, g {acc_g:.3f}, both {joint:.3f})"


def query_mse(f: Tensor, g: Tensor, y: Tensor, support: Tensor) -> float:
    """MSE on the points outside ``support`` of ``a f + b g + o`` fitted (least squares, ridge
    1e-4 on ``a``, ``b``) on the support points; ``f``, ``g``, ``y`` (N, P)."""
    cols = torch.stack([f, g, torch.ones_like(f)], -1).double()  # (N, P, 3)
    fit_cols = cols * support[:, None].double()
    gram = fit_cols.transpose(1, 2) @ fit_cols + torch.diag(torch.tensor([1e-4, 1e-4, 0.0]))
    rhs = fit_cols.transpose(1, 2) @ (y.double() * support.double())[..., None]
    pred = (cols @ torch.linalg.solve(gram.double(), rhs))[..., 0]
    query = support == 0
    return float((pred - y.double())[:, query].pow(2).mean())


def split_merge(family, banks, args, fit: float) -> tuple[float, list]:
    """Split-merge moves (Ueda et al.'s split-and-merge EM, as a move on the candidates): while a
    bank's most used candidate (on 512 training tasks) serves more than ``--sm-ratio`` x its
    least used, the least used is replaced by a perturbed copy of the most used, and training goes
    on for ``--sm-steps`` steps, ``tau`` annealed again from ``--sm-tau0``. The move is kept only if
    the training fit beats the same extra training without it. Typical fault it repairs: one candidate covering two primitives while
    another primitive is split over two candidates."""
    import copy

    for move in range(args.split_merge):
        usage: list = []
        training_fit(family, banks, args, usage)
        ratios = [float(u.max()) / max(1.0, float(u.min())) for u in usage]
        bank = max(range(len(banks)), key=lambda i: ratios[i])
        if ratios[bank] < args.sm_ratio:
            print(f"split-merge: usage {[u.tolist() for u in usage]}, nothing to move")
            break
        trial = copy.deepcopy(banks)
        src, dst = int(usage[bank].argmax()), int(usage[bank].argmin())
        with torch.no_grad():
            for name in ("w", "s", "t"):
                param = getattr(trial[bank], name)
                param[dst] = param[src] + args.sm_noise * torch.randn_like(param[src])
        sub = argparse.Namespace(**{**vars(args), "steps": args.sm_steps, "tau0": args.sm_tau0})
        sub.seed = args.seed + 7919 * (move + 1)  # fresh training tasks
        train(family, trial, sub)
        train(family, banks, sub)  # the control: the same extra training without the move
        new_fit, fit = training_fit(family, trial, args), training_fit(family, banks, args)
        kept = new_fit < fit
        print(
            f"split-merge {move}: bank {bank} usage {usage[bank].tolist()}: candidate {src} -> "
            f"{dst}; fit {new_fit:.4f} vs {fit:.4f} without ({'kept' if kept else 'undone'})"
        )
        if kept:
            banks, fit = trial, new_fit
    return fit, banks


def chunked_pairs(banks, x: Tensor, y: Tensor, w: Tensor, chain: bool, chunk: int = 32):
    """:func:`all_pairs` over tasks in chunks (the chain's outer values are large)."""
    return torch.cat(
        [
            all_pairs(banks, x[i : i + chunk], y[i : i + chunk], w, chain)
            for i in range(0, len(x), chunk)
        ],
        -1,
    )


@torch.no_grad()
def training_fit(family, banks, args, usage: list | None = None) -> float:
    """Mean over 512 fixed training tasks of the best fit (every pair, every context on the
    evaluation grid, all 25 points): the training objective at tau -> 0, the restarts' ranking.
    Uses no held-out task."""
    gen = torch.Generator().manual_seed(2000 + args.seed)
    b = family.sample(512, shots=10, query=15, generator=gen, split="train")
    x = torch.cat([b.support_x, b.query_x], 1)[..., 0]
    y = torch.cat([b.support_y, b.query_y], 1)[..., 0]
    grids = [bank.contexts for bank in banks]
    for bank in banks:
        bank.contexts = torch.linspace(-1.0, 1.0, args.eval_grid)
    mse = chunked_pairs(banks, x, y, torch.ones(x.shape[1]), args.chain)
    fit = float(mse.flatten(0, 2).amin(0).mean())
    for bank, grid in zip(banks, grids):
        bank.contexts = grid
    if usage is not None:  # tasks per candidate of each bank, routed by the best fit
        best = mse.flatten(1, 2).amin(1).argmin(0)
        if len(banks) == 1:
            k = banks[0].w.shape[0]
            chosen = [torch.triu_indices(k, k, offset=1).T[best].flatten()]
        else:
            ng = banks[1].w.shape[0]
            chosen = [best // ng, best % ng]
        usage[:] = [torch.bincount(c, minlength=b.w.shape[0]) for c, b in zip(chosen, banks)]
    return fit


@torch.no_grad()
def evaluate(family, banks, args) -> None:
    gen = torch.Generator().manual_seed(1000 + args.seed)
    nf, ng = len(family.inner), len(family.outer)
    for bank in banks:  # contexts searched on a finer grid than in training
        bank.contexts = torch.linspace(-1.0, 1.0, args.eval_grid)
    for subset in ("seen", "held_out"):
        b = family.sample(200, shots=10, query=15, generator=gen, split="test", subset=subset)
        x = torch.cat([b.support_x, b.query_x], 1)[..., 0]
        y = torch.cat([b.support_y, b.query_y], 1)[..., 0]
        support = (torch.arange(x.shape[1]) < 10).float()
        task = torch.arange(x.shape[0])
        mse = chunked_pairs(banks, x, y, support, args.chain)
        c = mse.shape[1]
        flat = mse.flatten(0, 2).argmin(0)  # per task: (pair, f's context, g's context)
        best, cf, cg = flat // (c * c), flat // c % c, flat % c
        if len(banks) == 1:
            k = banks[0].w.shape[0]
            pairs = torch.triu_indices(k, k, offset=1).T[best]
            values = banks[0](x)
            first, second = values[pairs[:, 0], cf, task], values[pairs[:, 1], cg, task]
            print(f"{subset:9s} {shared_purity(pairs, b.info['f'], b.info['g'], nf, k)}")
            print(f"{'':9s} query MSE {query_mse(first, second, y, support):.4f}")
            continue
        if args.mode == "descriptor":  # also routed by the true pair: the upper bound
            true = b.info["f"] * ng + b.info["g"]
            at = mse[true, :, :, task].flatten(1).argmin(1)
            first = banks[0](x)[b.info["f"], at // c, task]
            if args.chain:
                first, second = banks[1](first)[b.info["g"], at % c, task], torch.zeros_like(first)
            else:
                second = banks[1](x)[b.info["g"], at % c, task]
            mse_true = query_mse(first, second, y, support)
            print(f"{subset:9s} query MSE {mse_true:.4f} routed by the true pair (descriptor)")
        first = banks[0](x)[best // ng, cf, task]
        if args.chain:  # one term, g(f(x)): the second column is 0 (its coefficient too)
            first, second = banks[1](first)[best % ng, cg, task], torch.zeros_like(first)
        else:
            second = banks[1](x)[best % ng, cg, task]
        print(f"{subset:9s} query MSE {query_mse(first, second, y, support):.4f}")
        choices = {"f": (best // ng).tolist(), "g": (best % ng).tolist()}
        truth = {"f": b.info["f"].tolist(), "g": b.info["g"].tolist()}
        pur = routing_purity(choices, truth, family.factors, {"f": nf, "g": ng})
        slots = ", ".join(
            f"{k}: NMI {v['nmi']:.3f} acc {v['accuracy']:.3f}" for k, v in pur["slots"].items()
        )
        print(f"{subset:9s} joint NMI {pur['joint_nmi']:.3f}  ({slots})")
        if args.chain:
            continue
        # The sum is symmetric: a bank may hold the other slot's primitives. Scored as a set.
        pairs = torch.stack([best // ng, best % ng + nf], 1)
        print(f"{'':9s} as a set: {shared_purity(pairs, b.info['f'], b.info['g'], nf, nf + ng)}")


def main() -> None:
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/from_data_sums.yaml")
    p.add_argument("--mode", choices=("data", "descriptor"), default="data")
    p.add_argument("--steps", type=meta_steps, default=1000)
    p.add_argument("--batch", type=positive_int, default=64)
    p.add_argument("--grid", type=positive_int, default=15, help="contexts per candidate")
    p.add_argument("--centres", type=positive_int, default=64, help="RBF centres per shape")
    p.add_argument("--basis", choices=("rbf", "linear"), default="rbf")
    p.add_argument("--shared", action="store_true", help="one bank, unordered pairs (sums)")
    p.add_argument(
        "--candidates", type=non_negative_int, default=0, help="--shared: bank size (0: F + G)"
    )
    p.add_argument(
        "--eval-grid", type=positive_int, default=41, help="contexts per candidate at evaluation"
    )
    p.add_argument(
        "--spread", type=non_negative_float, default=1.0, help="candidates' start: 1 independent"
    )
    p.add_argument(
        "--smooth", type=non_negative_float, default=0.0, help="weight of the tables' roughness"
    )
    p.add_argument("--tau0", type=positive_float, default=1.0)
    p.add_argument("--tau1", type=positive_float, default=0.01)
    p.add_argument("--lr", type=positive_float, default=0.01)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument(
        "--first-restart", type=non_negative_int, default=0, help="repeat restart R of a run"
    )
    p.add_argument("--save", default=None, help="save the kept banks' state here (torch.save)")
    p.add_argument(
        "--split-merge",
        type=non_negative_int,
        default=0,
        help="at most this many split-merge moves",
    )
    p.add_argument(
        "--sm-ratio", type=positive_float, default=1.5, help="usage ratio that triggers a move"
    )
    p.add_argument("--sm-steps", type=meta_steps, default=1000, help="training steps after a move")
    p.add_argument(
        "--reheat", type=non_negative_int, default=0, help="steps of a second anneal from --sm-tau0"
    )
    p.add_argument(
        "--sm-noise", type=non_negative_float, default=0.02, help="perturbation of the copy"
    )
    p.add_argument(
        "--sm-tau0", type=positive_float, default=0.1, help="tau after a move, annealed to tau1"
    )
    p.add_argument("--lr-decay", action="store_true", help="lr to 5%% over the last 20%% of steps")
    p.add_argument(
        "--restarts", type=positive_int, default=1, help="keep the one with the best training fit"
    )
    p.add_argument(
        "--eval-all", action="store_true", help="evaluate every restart, not only the kept"
    )
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. task.args.inner=[...]")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    overrides = ["task.args.check.min_distinct=0", *args.overrides]
    family = build_family(load_config(args.config, overrides).task)
    args.chain = family.structure.name == "chain"
    if args.chain and args.shared:
        p.error("--shared is for sums: a chain's slots are not interchangeable")
    sizes = [len(family.inner), len(family.outer)]
    if args.shared:
        sizes = [args.candidates or sum(sizes)]
    runs = []
    for restart in range(args.first_restart, args.first_restart + args.restarts):
        torch.manual_seed(args.seed + 1000 * restart)
        banks = [
            WarpLineBank(
                count=n, centres=args.centres, grid=args.grid, basis=args.basis, spread=args.spread
            )
            for n in sizes
        ]
        train(family, banks, args)
        fit = training_fit(family, banks, args)
        print(f"restart {restart}: best-fit MSE on 512 training tasks {fit:.4f}")
        if args.split_merge:
            fit, banks = split_merge(family, banks, args, fit)
        if args.reheat:  # anneal once more, from --sm-tau0
            sub = argparse.Namespace(**{**vars(args), "steps": args.reheat, "tau0": args.sm_tau0})
            sub.seed = args.seed + 7919
            train(family, banks, sub)
            fit = training_fit(family, banks, args)
            print(f"reheated from tau {args.sm_tau0}: best-fit MSE {fit:.4f}")
        if args.restarts > 1 and args.eval_all:
            evaluate(family, banks, args)
        runs.append((fit, restart, banks))
    fit, restart, banks = min(runs, key=lambda r: r[0])
    print(f"kept restart {restart} (lowest training fit, {fit:.4f})")
    if args.save:
        torch.save({"args": vars(args), "banks": [b.state_dict() for b in banks]}, args.save)
    evaluate(family, banks, args)


if __name__ == "__main__":
    run_script(main)
