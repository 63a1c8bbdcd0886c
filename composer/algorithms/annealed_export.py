"""The routed model of each task of the annealed learner as an explicit graph: the chosen
candidates at their contexts as equal ReLU blocks (:meth:`WarpLineBank.as_relu_block`), the
fitted amplitudes as ``1 -> 1`` affine maps, so ``inspect`` draws it and ``verify`` reads it
like any MLP graph."""

from __future__ import annotations

import torch

from metacompose.algorithms.inner_loop import Params
from metacompose.algorithms.learner import TaskExport
from metacompose.graph import ModuleGraph
from metacompose.modules.base import TypedModule
from metacompose.modules.linear import Identity, Linear
from metacompose.modules.warp_line import WarpLineBank


def _slot(
    nodes: dict[str, TypedModule], edges: list, merge: dict[str, str], *, slot: str,
    source: str, bank: WarpLineBank, k: int, ctx: float, uniform: bool,
) -> None:  # fmt: skip
    """Add slot ``slot`` reading ``source``: candidate ``k`` at ``ctx``; uniform routing: the sum
    of every candidate at ``ctx`` (node ``slot`` sums ``slot0``, ``slot1``, ...)."""
    if not uniform or bank.count == 1:
        nodes[slot] = bank.as_relu_block(k, ctx)
        edges.append((source, slot))
        return
    nodes[slot], merge[slot] = Identity(features=1), "sum"
    for i in range(bank.count):
        nodes[f"{slot}{i}"] = bank.as_relu_block(i, ctx)
        edges += [(source, f"{slot}{i}"), (f"{slot}{i}", slot)]


def export_routed(
    fast: Params, *, f_bank: WarpLineBank, g_bank: WarpLineBank, structure: str, uniform: bool,
    routed_by: str,
) -> list[TaskExport]:  # fmt: skip
    """One :class:`TaskExport` per routed task of ``fast`` (``f``, ``g``, ``cf``, ``cg``,
    ``coef = (a, b, c)``).

    - sum: ``x -> f -> amp_f -> sum <- amp_g <- g <- x`` (``amp_f`` carries the offset ``c``);
    - chain: ``x -> f -> g -> amp`` (``amp``: ``a u + c``).

    Uniform routing: each slot sums every candidate, and the next affine map divides by their
    count (for the chain a fixed ``f_mean`` map before g). Before adaptation (``meta``) the
    amplitudes are 0. ``routed_by``: what chose the candidates (``"data"`` or ``"descriptor"``)."""
    counts = {"f": 1 if not uniform else f_bank.count, "g": 1 if not uniform else g_bank.count}
    dtype = fast["coef"].dtype
    out = []
    for t in range(len(fast["f"])):
        f, g = int(fast["f"][t]), int(fast["g"][t])
        cf, cg = float(fast["cf"][t]), float(fast["cg"][t])
        a, b, c = fast["coef"][t].tolist()
        nodes: dict[str, TypedModule] = {"x": Identity(features=1)}
        edges: list[tuple[str, str]] = []
        merge: dict[str, str] = {}
        _slot(nodes, edges, merge, slot="f", source="x", bank=f_bank, k=f, ctx=cf, uniform=uniform)
        if structure == "chain":
            source = "f"
            if counts["f"] > 1:
                nodes["f_mean"] = Linear(in_features=1, out_features=1, bias=False).to(dtype)
                nodes["f_mean"].linear.weight.data.fill_(1.0 / counts["f"])
                edges.append(("f", "f_mean"))
                source = "f_mean"
            _slot(nodes, edges, merge, slot="g", source=source, bank=g_bank, k=g, ctx=cg,
                  uniform=uniform)  # fmt: skip
            nodes["amp"] = Linear(in_features=1, out_features=1).to(dtype)
            edges.append(("g", "amp"))
            fill = {"amp.linear.weight": a / counts["g"], "amp.linear.bias": c}
        else:
            _slot(nodes, edges, merge, slot="g", source="x", bank=g_bank, k=g, ctx=cg,
                  uniform=uniform)  # fmt: skip
            nodes["amp_f"] = Linear(in_features=1, out_features=1).to(dtype)
            nodes["amp_g"] = Linear(in_features=1, out_features=1, bias=False).to(dtype)
            nodes["sum"], merge["sum"] = Identity(features=1), "sum"
            edges += [("f", "amp_f"), ("g", "amp_g"), ("amp_f", "sum"), ("amp_g", "sum")]
            fill = {"amp_f.linear.weight": a / counts["f"], "amp_f.linear.bias": c,
                    "amp_g.linear.weight": b / counts["g"]}  # fmt: skip
        graph = ModuleGraph(nodes=nodes, edges=edges, merge=merge)
        adapted = {k: v.detach().clone() for k, v in graph.named_parameters()}
        for key, value in fill.items():
            adapted[key].fill_(value)
        meta = {
            k: v.detach().clone() if not k.startswith("amp") else torch.zeros_like(v)
            for k, v in graph.named_parameters()
        }
        choice = {} if uniform else {"f": f, "g": g}
        out.append(TaskExport(graph, meta, adapted, choice, routed_by=routed_by))
    return out
