"""Routing from data on the sum ``y = a f(x) + b g(x) + c`` and the chain ``y = a g(f(x)) + c``
by deterministic annealing. Two banks of candidate shapes (:class:`~metacompose.modules.warp_line.
WarpLineBank`), one per slot, each read at a per-task context on a grid. No descriptor is read:

- **Meta-training** fits *every* pair of candidates at *every* context pair to each task's points
  in closed form (:func:`~metacompose.algorithms.pair_fit.pair_fit_mse`) and minimises the soft
  minimum ``-tau logsumexp(-MSE / tau)`` over them, ``tau`` falling geometrically from
  ``tau_start`` to ``tau_end`` over ``anneal_steps`` meta-iterations (deterministic annealing:
  at a high ``tau`` every candidate learns from every task, as ``tau`` falls each task is
  claimed by the pair that explains it best, and candidates specialise).
- **Replicas**: ``replicas`` independent copies train side by side (annealing has bad local
  optima); each keeps a running mean of its best-pair fit on the training tasks, and the lowest
  is kept. Nothing held out is read.
- **Evaluation** (:meth:`AnnealedSumLearner.adapt`): every pair at every context of a finer grid
  is fitted on the *support* set, the lowest support MSE wins; the query set is never read. Only
  fits whose amplitudes stay within what meta-training needed are admitted (the running mean of
  each meta-batch's largest best-pair amplitude): a wrong pair can fit 10 points with two large
  amplitudes that cancel, and predicts wildly between them.

Without an offset (``offset = False``, the builder's ``offset``) every fit is ``y = a f(x) + b g(x)``
(``a g(f(x))``). Measured in docs/router.md ("Routing from data by annealing").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from metacompose.algorithms.annealed_checks import check_annealed_arguments
from metacompose.algorithms.annealed_export import export_routed
from metacompose.algorithms.balanced_pairs import balanced_soft_min
from metacompose.algorithms.chain_fit import fit_single, single_fit_mse
from metacompose.algorithms.context_refine import best_on_grid, refine_contexts
from metacompose.algorithms.cross_fit import cross_fit_banks
from metacompose.algorithms.descriptor_pairs import (
    descriptor_pair,
    given_pair_fit,
    given_pair_refined,
    true_pair_cells,
    true_pair_rows,
)
from metacompose.algorithms.inner_loop import Params
from metacompose.algorithms.learner import MetaStep, TaskExport
from metacompose.algorithms.pair_fit import fit_pair_weighted, matched_fit_mse, pair_fit_mse
from metacompose.algorithms.shared_pairs import refine_upper_pairs, upper_pair_fit
from metacompose.algorithms.sum_banks import Routing, Structure, SumBanks
from metacompose.modules.warp_line import WarpLineBank
from metacompose.tasks.base import TaskBatch

Tensor = torch.Tensor
# Tasks per chunk at evaluation: (C G)^2 pair fits per task on the finer grid.
EVAL_CHUNK = 32


class AnnealedSumLearner(nn.Module):
    """Learns the candidates of both slots by deterministic annealing; routes each task from its
    support set (see the module docstring). Implements the ``Learner`` protocol.

    Args:
        f_banks, g_banks: one bank per replica for each slot (same sizes within a slot).
        tau_start, tau_end: the annealing temperature's start and end (``tau_end <= tau_start``).
        anneal_steps: meta-iterations over which ``tau`` falls; it stays at ``tau_end`` after.
        eval_contexts: the context grid searched at evaluation (finer than the training grid).
        ridge: ridge on the two amplitudes of every fit (> 0: keeps a flat candidate solvable).
        routing: ``"data"`` (no descriptor is read) or ``"descriptor"``: meta-training fits each
            task's true pair only, read from its one-hot (f, g) descriptor (f's candidates
            first; ``task.args.descriptor: onehot``): the upper bound with the same candidates.
        eval_routing: how :meth:`evaluate`, :meth:`choices` and :meth:`export_tasks` route:
            ``"data"`` or ``"descriptor"``; default: as ``routing``. Trained with descriptors and
            routed from data is the intermediate variant. :meth:`adapt` (support set only)
            always routes from data. ``"uniform"`` (as both): no routing, the ablation; each slot
            is the mean of all its candidates at one shared context.
        fit_decay: the running mean of each replica's fit forgets at this rate per step.
        structure: ``"sum"`` (``y = a f(x) + b g(x) + c``) or ``"chain"`` (``y = a g(f(x)) + c``:
            the g-bank reads each f-candidate's output; every composition fitted in closed form).
        refine: rounds of local search that refine each pair's best grid contexts below the
            grid's resolution, in meta-training (the refined fits join the soft minimum) and at
            evaluation (:mod:`~metacompose.algorithms.context_refine`); 0: the grid alone. The
            sum only.

    Passing the same bank as ``f_banks[r]`` and ``g_banks[r]`` (every replica) makes it *shared*:
    both terms of the sum read one bank, and a task's pair is one of the unordered pairs of
    distinct candidates ``i < j`` (:mod:`~metacompose.algorithms.shared_pairs`); routing from
    data only.
    """

    eval_inner_steps = 0  # nothing is stepped: the support set is fitted in closed form
    balance_steps = 0  # pilot: the balanced E-step's fade (balanced_pairs), set by the builder
    balance_from = 0  # ... for the replicas from this one on (the others: the plain objective)
    cross_fit = 0.0  # pilot: weight of the term chosen on support, scored on query (cross_fit)
    offset = True  # every fit has the offset c; False (the builder's ``offset``): y = a f + b g
    loss = "mse"

    def __init__(
        self,
        *,
        f_banks: list[WarpLineBank],
        g_banks: list[WarpLineBank],
        tau_start: float,
        tau_end: float,
        anneal_steps: int,
        eval_contexts: int,
        ridge: float,
        routing: Routing = "data",
        eval_routing: Routing | None = None,
        fit_decay: float = 0.99,
        structure: Structure = "sum",
        refine: int = 0,
    ) -> None:
        super().__init__()
        check_annealed_arguments(
            f_banks=f_banks, g_banks=g_banks, tau_start=tau_start, tau_end=tau_end,
            anneal_steps=anneal_steps, eval_contexts=eval_contexts, ridge=ridge, routing=routing,
            eval_routing=eval_routing, structure=structure, refine=refine,
        )  # fmt: skip
        self.f_banks = nn.ModuleList(f_banks)
        self.g_banks = nn.ModuleList(g_banks)
        self.tau_start, self.tau_end = float(tau_start), float(tau_end)
        self.anneal_steps, self.ridge, self.fit_decay = int(anneal_steps), float(ridge), fit_decay
        self.routing, self.eval_routing = routing, eval_routing or routing
        self.structure, self.refine = structure, int(refine)
        self.shared = all(f is g for f, g in zip(f_banks, g_banks, strict=True))
        self.register_buffer("eval_grid", torch.linspace(-1.0, 1.0, eval_contexts), False)
        # per replica, running means over training meta-batches (NaN: not trained yet) of the
        # best-pair fit and of the largest amplitude a best pair needed
        self.register_buffer("fit", torch.full((len(f_banks),), float("nan")))
        self.register_buffer("amplitude", torch.full((len(f_banks),), float("nan")))
        spec = f_banks[0].spec()
        spec.pop("count")
        spec["g_span"] = None if g_banks[0].span == spec["span"] else g_banks[0].span
        self._graph = SumBanks(
            candidates={"f": f_banks[0].count, "g": g_banks[0].count},
            replicas=len(f_banks),
            bank=spec,
            structure=structure,
            shared=self.shared,
        )

    @property
    def graph(self) -> SumBanks:
        return self._graph

    @property
    def kept(self) -> int:
        """The replica with the lowest running fit (the first before any training)."""
        fit = torch.nan_to_num(self.fit, nan=math.inf)
        return int(fit.argmin()) if torch.isfinite(fit).any() else 0

    @property
    def fit_args(self) -> dict:  # of every closed-form fit
        return {"ridge": self.ridge, "offset": self.offset}

    def tau(self, step: int) -> float:
        frac = min(1.0, max(0, step) / self.anneal_steps)
        return self.tau_start * (self.tau_end / self.tau_start) ** frac

    def _pair_mse(self, r: int, x: Tensor, y: Tensor, grid: Tensor | None) -> tuple[Tensor, Tensor]:
        """Replica ``r``'s fit of every pair at every context pair on all points of ``x``, ``y``
        ``(T, N)``: the MSE and the larger amplitude, each ``(C G, D G, T)``."""
        hf = self._on_grid(self.f_banks[r], x, grid)  # (C, G, T, N)
        if self.structure == "chain":  # g reads every f at every context: (D, G, C, G, T, N)
            h = self._on_grid(self.g_banks[r], hf, grid).permute(2, 3, 0, 1, 4, 5)
            return single_fit_mse(h.flatten(2, 3).flatten(0, 1), y, **self.fit_args)
        if self.shared:  # the pairs i < j only
            return upper_pair_fit(hf, y, **self.fit_args)
        hg = self._on_grid(self.g_banks[r], x, grid).flatten(0, 1)
        return pair_fit_mse(hf.flatten(0, 1), hg, y, **self.fit_args, amplitudes=True)

    def _refined(
        self, r: int, x: Tensor, y: Tensor, grid_mse: Tensor, grid: Tensor,
        limit: Tensor | float = math.inf,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        """Replica ``r``'s every pair at its best contexts on ``grid`` (``grid_mse``: its
        :meth:`_pair_mse`), refined: the MSE and larger amplitude (differentiable) and the
        contexts ``cf``, ``cg``, each ``(C, D, T)`` (uniform routing: ``C = D = 1``)."""
        fb, gb = self.f_banks[r], self.g_banks[r]
        if self.shared:
            return refine_upper_pairs(fb, x, y, grid_mse, grid, rounds=self.refine,
                                      **self.fit_args, limit=limit)  # fmt: skip

        def read(cf: Tensor, cg: Tensor) -> tuple[Tensor, Tensor]:
            xs = x.view(x.shape[0], *[1] * (cf.dim() - 3), x.shape[1])
            hg = self._read_at(gb, xs, cg.transpose(0, 1)).transpose(0, 1)
            return self._read_at(fb, xs, cf), hg

        cf, cg = best_on_grid(grid_mse, grid)
        step = 2.0 / max(1, len(grid) - 1)
        cf, cg = refine_contexts(
            read, y, cf, cg, step=step, rounds=self.refine, **self.fit_args, limit=limit
        )
        mse, amp = matched_fit_mse(*read(cf, cg), y, **self.fit_args)
        return mse, amp, cf, cg

    def _read_at(self, bank: WarpLineBank, x: Tensor, ctx: Tensor) -> Tensor:
        """``(C, *B, N)``: every candidate at its contexts ``ctx`` ``(C, *B)``; uniform routing:
        the mean of all candidates at the one context ``ctx`` ``(1, *B)``."""
        if self.routing != "uniform":
            return bank.read_at(x, ctx)
        return bank.read_at(x, ctx.expand(bank.count, *ctx.shape[1:])).mean(0, keepdim=True)

    def _on_grid(self, bank: WarpLineBank, x: Tensor, grid: Tensor | None) -> Tensor:
        """``(C, G, T, N)``: every candidate at every context; uniform routing: their mean
        ``(1, G, T, N)``."""
        h = bank.on_grid(x, bank.grid(x.dtype) if grid is None else grid)
        return h.mean(0, keepdim=True) if self.routing == "uniform" else h

    def _chosen(self, bank: WarpLineBank, x: Tensor, cand: Tensor, ctx: Tensor) -> Tensor:
        """``(T, N)``: each task's candidate at its context; uniform routing: all candidates' mean."""
        if self.routing != "uniform":
            return bank.chosen(x, cand, ctx)
        every = [bank.chosen(x, torch.full_like(cand, k), ctx) for k in range(bank.count)]
        return torch.stack(every).mean(0)

    # ------------------------------------------------------------------------- Learner protocol
    def meta_step(self, batch: TaskBatch, *, step: int = 0) -> MetaStep:
        """The annealed objective of every replica on each task's support and query points (both
        are meta-training data); ``query_loss``: the kept replica's query MSE, routed and fitted
        on the support set as at evaluation."""
        x = torch.cat([batch.support_x, batch.query_x], 1)[..., 0]
        y = torch.cat([batch.support_y, batch.query_y], 1)[..., 0]
        tau = self.tau(step)
        allowed = None
        if self.routing == "descriptor":
            pair = descriptor_pair(batch.descriptor, **self._counts())  # the true (f, g)
            allowed = true_pair_rows(*pair, **self._counts(), contexts=self.f_banks[0].contexts)
        objective, fits, amps = x.new_zeros(()), [], []
        for r in range(len(self.f_banks)):
            grid_mse, grid_amp = self._pair_mse(r, x, y, None)
            mse, amp = (v.flatten(0, 1).T for v in (grid_mse, grid_amp))  # (T, pairs)
            if allowed is not None:  # only the true pair's contexts, task by task
                mse = mse[allowed.T].view(len(x), -1)
                amp = amp[allowed.T].view(len(x), -1)
            if self.refine:  # each pair's refined fit joins the pool
                grid = self.f_banks[r].grid(x.dtype)
                fine, fine_amp, _, _ = self._refined(r, x, y, grid_mse.detach(), grid)
                fine, fine_amp = fine.flatten(0, 1).T, fine_amp.flatten(0, 1).T  # (T, C D)
                if allowed is not None:
                    mask = true_pair_cells(*pair, **self._counts()).T
                    fine, fine_amp = fine[mask].view(len(x), -1), fine_amp[mask].view(len(x), -1)
                mse, amp = torch.cat([mse, fine], 1), torch.cat([amp, fine_amp], 1)
            soft = -tau * torch.logsumexp(-mse / tau, 1) + tau * math.log(mse.shape[1])
            on = self.balance_steps and r >= self.balance_from
            lam = max(0.0, 1.0 - step / self.balance_steps) if on else 0.0
            if lam > 0 and allowed is None and not self.shared and self.structure == "sum":
                soft = balanced_soft_min(mse, **self._counts(), tau=tau, weight=lam,
                                         contexts=self.f_banks[r].contexts)  # fmt: skip
            objective = objective + soft.mean()
            if self.cross_fit and allowed is None:
                cv = cross_fit_banks(self.f_banks[r], self.g_banks[r], x, y, tau=tau,
                                     support=batch.support_x.shape[1], **self.fit_args,
                                     limit=self.amplitude[r])  # fmt: skip
                objective = objective + self.cross_fit * cv.mean()
            best, at = mse.detach().min(1)
            fits.append(best.mean())
            amps.append(amp.detach().gather(1, at[:, None]).max())
        if self.training:
            with torch.no_grad():
                for buf, now in ((self.fit, fits), (self.amplitude, amps)):
                    now = torch.stack(now).to(buf.dtype)
                    mixed = self.fit_decay * buf + (1 - self.fit_decay) * now
                    buf.copy_(torch.where(torch.isfinite(buf), mixed, now))
        with torch.no_grad():  # on the training grid: a cheap log of what evaluation measures
            grid = self.f_banks[0].grid(x.dtype)
            fast = self._route(batch.support_x[..., 0], batch.support_y[..., 0], grid)
            query = self.query_loss(fast, {}, batch.query_x, batch.query_y)
        return MetaStep(objective=objective, query_loss=query)

    @torch.no_grad()
    def adapt(self, x, y, *, steps=None, first_order=None, on_step=None) -> tuple[Params, Params]:
        """Route and fit each task on its support set ``x``, ``y`` ``(T, K, 1)``: the pair and
        contexts (on the evaluation grid) of the lowest support MSE, and their amplitudes.
        Returns ``({"f", "g", "cf", "cg", "coef"}, {})``, each with a leading task dimension."""
        return self._route(x[..., 0], y[..., 0], self.eval_grid), {}

    def _counts(self) -> dict[str, int]:
        return {f"{slot}_count": self.graph.num_candidates[slot] for slot in ("f", "g")}

    def _eval_route(self, batch: TaskBatch) -> Params:
        """Route as ``eval_routing`` says: from the support set, or by the descriptor."""
        x, y = batch.support_x[..., 0], batch.support_y[..., 0]
        by_descriptor = self.eval_routing == "descriptor"
        pair = descriptor_pair(batch.descriptor, **self._counts()) if by_descriptor else None
        return self._route(x, y, self.eval_grid, pair)

    def _route(
        self, sx: Tensor, sy: Tensor, grid: Tensor, pair: tuple[Tensor, Tensor] | None = None
    ) -> Params:
        """Each task's pair (every pair, or the given ``pair``) and contexts of the lowest
        support MSE among the admissible fits, and its amplitudes."""
        r, n = self.kept, len(grid)
        fb, gb = self.f_banks[r], self.g_banks[r]
        limit = float(self.amplitude[r]) if torch.isfinite(self.amplitude[r]) else math.inf
        if self.refine:
            return self._route_refined(sx, sy, grid, pair, limit)
        picks = []
        for i in range(0, len(sx), EVAL_CHUNK):
            x, y = sx[i : i + EVAL_CHUNK], sy[i : i + EVAL_CHUNK]
            if pair is None:
                mse, amp = (v.flatten(0, 1) for v in self._pair_mse(r, x, y, grid))
            else:  # the given pair's candidates only: every context pair
                mse, amp = given_pair_fit(
                    fb, gb, x, y, grid, [p[i : i + EVAL_CHUNK] for p in pair],
                    chain=self.structure == "chain", **self.fit_args,
                )  # fmt: skip
            fits = amp <= limit  # a task with no admissible fit takes the best of all
            mse = torch.where(fits | ~fits.any(0, keepdim=True), mse, math.inf)
            picks.append(mse.argmin(0))
        flat = torch.cat(picks)
        if pair is None:
            cols = (1 if self.routing == "uniform" else gb.count) * n
            row, col = flat // cols, flat % cols
            f, cf, g, cg = row // n, grid[row % n], col // n, grid[col % n]
        else:
            (f, g), cf, cg = pair, grid[flat // n], grid[flat % n]
        return self._fitted({"f": f, "g": g, "cf": cf, "cg": cg}, sx, sy)

    def _fitted(self, fast: Params, sx: Tensor, sy: Tensor) -> Params:
        """``fast`` (routed pairs, contexts) with their amplitudes fitted on ``sx``, ``sy``."""
        hf, hg = self._terms(fast, sx)
        if self.structure == "chain":
            return fast | {"coef": fit_single(hg, sy, **self.fit_args)}
        weight = torch.ones(sx.shape[1], dtype=sx.dtype, device=sx.device)
        return fast | {"coef": fit_pair_weighted(hf, hg, sy, weight=weight, **self.fit_args)}

    def _route_refined(
        self, sx: Tensor, sy: Tensor, grid: Tensor, pair: tuple[Tensor, Tensor] | None,
        limit: float,
    ) -> Params:  # fmt: skip
        """:meth:`_route` with each pair's contexts refined below ``grid``: every pair's best
        admissible grid contexts are refined, then the pair is taken; given ``pair``, only that
        pair's contexts are searched (:func:`given_pair_refined`)."""
        r = self.kept
        chosen: dict[str, list[Tensor]] = {"f": [], "g": [], "cf": [], "cg": []}
        for i in range(0, len(sx), EVAL_CHUNK):
            x, y = sx[i : i + EVAL_CHUNK], sy[i : i + EVAL_CHUNK]
            if pair is not None:
                f, g = (p[i : i + EVAL_CHUNK] for p in pair)
                cf, cg = given_pair_refined(self.f_banks[r], self.g_banks[r], x, y, grid, [f, g],
                                            rounds=self.refine, **self.fit_args, limit=limit)  # fmt: skip
            else:
                mse, amp = self._pair_mse(r, x, y, grid)  # (C G, D G, T)
                some = (amp <= limit).flatten(0, 1).any(0)  # (T,); the limit in amp's dtype
                per_task = amp.new_full(some.shape, limit).masked_fill(~some, math.inf)
                mse = torch.where(amp <= per_task, mse, math.inf)
                fine, fine_amp, cf, cg = self._refined(r, x, y, mse, grid, per_task)
                fine = torch.where(fine_amp <= per_task, fine, math.inf)  # (C, D, T)
                at, t = fine.flatten(0, 1).argmin(0), torch.arange(len(x), device=x.device)
                f, g = at // fine.shape[1], at % fine.shape[1]
                cf, cg = cf[f, g, t], cg[f, g, t]
            for key, value in (("f", f), ("g", g), ("cf", cf), ("cg", cg)):
                chosen[key].append(value)
        return self._fitted({k: torch.cat(v) for k, v in chosen.items()}, sx, sy)

    def _terms(self, fast: Params, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(T, N)`` curves of the routed tasks at ``x``: ``f(x)`` and ``g(x)`` (the sum) or
        ``g(f(x))`` (the chain)."""
        r = self.kept
        hf = self._chosen(self.f_banks[r], x, fast["f"], fast["cf"])
        inner = hf if self.structure == "chain" else x
        return hf, self._chosen(self.g_banks[r], inner, fast["g"], fast["cg"])

    def predict(self, fast: Params, x: Tensor) -> Tensor:
        """``(T, N, 1)`` predictions of the adapted tasks ``fast`` at ``x`` ``(T, N, 1)``."""
        hf, hg = self._terms(fast, x[..., 0])
        c = fast["coef"]
        if self.structure == "chain":
            return (c[:, 0:1] * hg + c[:, 2:3])[..., None]
        return (c[:, 0:1] * hf + c[:, 1:2] * hg + c[:, 2:3])[..., None]

    def query_loss(self, fast: Params, frozen: Params, x, y, *, metric: bool = False) -> Tensor:
        """``(T,)`` query MSE of the routed, fitted tasks (loss and metric alike)."""
        return ((self.predict(fast, x) - y) ** 2).flatten(1).mean(1)

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, *, steps: int | None = None) -> Tensor:
        """``(1, T)`` query MSE after routing and fitting on the support set (``steps`` does not
        apply: the fit is closed form)."""
        fast = self._eval_route(batch)
        return self.query_loss(fast, {}, batch.query_x, batch.query_y, metric=True)[None]

    @torch.no_grad()
    def choices(self, batch: TaskBatch) -> dict[str, Tensor]:
        """Slot -> ``(T,)`` candidate each task is routed to (``eval_routing``); uniform routing
        makes no choice: ``{}``."""
        if self.routing == "uniform":
            return {}
        fast = self._eval_route(batch)
        return {"f": fast["f"], "g": fast["g"]}

    @torch.no_grad()
    def export_tasks(self, batch: TaskBatch, *, steps: int | None = None) -> list[TaskExport]:
        """Each task's routed model as an explicit graph of equal ReLU blocks and affine maps
        (:func:`~metacompose.algorithms.annealed_export.export_routed`)."""
        r = self.kept
        return export_routed(self._eval_route(batch), f_bank=self.f_banks[r], g_bank=self.g_banks[r],
                             structure=self.structure, uniform=self.routing == "uniform",
                             routed_by=self.eval_routing)  # fmt: skip
