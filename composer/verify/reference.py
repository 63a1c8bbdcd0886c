"""The real graph in float64, with batch norm normalising by fixed statistics.

``TaskBatchNorm2d`` normalises over the batch it is applied to, so a conv net is an affine map of
its input only once those statistics are fixed. :func:`batch_stats` computes them (float64) from
the batch the model normalises, through the given weights; :func:`frozen_batch_norm` makes the real
graph use them; :func:`reference_forward` is the graph that certificates speak of and that
counterexamples are replayed on.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from metacompose.graph import ModuleGraph
from metacompose.modules.batch_norm import TaskBatchNorm2d

Params = dict[str, torch.Tensor]
BatchStats = dict[str, tuple[torch.Tensor, torch.Tensor]]


def has_batch_norm(graph: ModuleGraph) -> bool:
    return any(isinstance(m, TaskBatchNorm2d) for m in graph.modules())


def _as_input(graph: ModuleGraph, x: torch.Tensor) -> torch.Tensor:
    x = x.to(torch.float64)
    if graph.in_space.kind == "vec":
        return x.reshape(x.shape[0], -1)
    return x.reshape(x.shape[0], *graph.in_space.shape)


def batch_stats(graph: ModuleGraph, params: Params, stats_x: torch.Tensor) -> BatchStats:
    """Per batch-norm module (qualified name): the ``(mean, var)`` over ``stats_x`` it uses, float64."""
    stats: BatchStats = {}
    handles = []
    for name, mod in graph.named_modules():
        if isinstance(mod, TaskBatchNorm2d):

            def pre(m, inp, name=name):
                x = inp[0]
                mean = x.mean(dim=(0, 2, 3))
                stats[name] = (mean, ((x - mean.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3)))

            handles.append(mod.register_forward_pre_hook(pre))
    try:
        p = {k: v.detach().to(torch.float64) for k, v in params.items()}
        with torch.no_grad():
            graph.apply_params(p, _as_input(graph, stats_x))
    finally:
        for h in handles:
            h.remove()
    return stats


@contextmanager
def frozen_batch_norm(graph: ModuleGraph, stats: BatchStats):
    """Within the block every ``TaskBatchNorm2d`` of ``graph`` normalises with ``stats``."""
    handles = []
    for name, mod in graph.named_modules():
        if isinstance(mod, TaskBatchNorm2d):

            def hook(m, inp, out, name=name):
                mean, var = (t.view(1, -1, 1, 1) for t in stats[name])
                x_hat = (inp[0] - mean) * torch.rsqrt(var + m.eps)
                return x_hat * m.weight.view(1, -1, 1, 1) + m.bias.view(1, -1, 1, 1)

            handles.append(mod.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def reference_forward(
    graph: ModuleGraph,
    params: Params,
    x: torch.Tensor,
    *,
    stats_x: torch.Tensor | None = None,
) -> torch.Tensor:
    """The real ``graph`` (``functional_call``, float64) on flat ``x`` of shape ``(B, n)``:
    ``(B, m)``; batch norm normalises with the statistics of ``stats_x`` (see module docstring)."""
    p = {k: v.detach().to(torch.float64) for k, v in params.items()}
    if not has_batch_norm(graph):
        with torch.no_grad():
            return graph.apply_params(p, _as_input(graph, x))
    if stats_x is None:
        raise ValueError("the graph has batch norm: reference_forward needs stats_x")
    stats = batch_stats(graph, {**dict(graph.named_parameters()), **p}, stats_x)
    with torch.no_grad(), frozen_batch_norm(graph, stats):
        return graph.apply_params(p, _as_input(graph, x))
