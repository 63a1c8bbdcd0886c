"""MAML++'s per-step batch-norm weights and biases (Antoniou et al. 2019, "BNWB").

With ``algo.per_step_bn`` every batch-norm layer keeps one weight and bias per inner-loop state:
the forward pass of the model after ``s`` inner steps (the support forward of step ``s + 1``, or the
query forward after ``s`` steps) uses copy ``min(s, S)``, ``S`` the training steps. The copies are
meta-learned and never adapted in the inner loop; all start at the layer's own values. Evaluation
with more than ``S`` steps keeps using copy ``S``, the one meta-trained for the adapted model.

The statistics themselves are the current batch's (``TaskBatchNorm2d`` is transductive, as in
MAML), so per-step *running* statistics, which MAML++'s reference code tracks but never normalises
with, have nothing to hold here.
"""

from __future__ import annotations

import torch
from torch import nn

from metacompose.algorithms.inner_loop import Params
from metacompose.algorithms.step_sizes import safe_name
from metacompose.graph import ModuleGraph
from metacompose.modules.batch_norm import TaskBatchNorm2d


def batch_norm_keys(graph: ModuleGraph) -> list[str]:
    """The parameter names of every batch-norm layer of ``graph`` (weights and biases)."""
    return [
        f"{name}.{p}"
        for name, m in graph.named_modules()
        if isinstance(m, TaskBatchNorm2d)
        for p in ("weight", "bias")
    ]


class PerStepNorms(nn.Module):
    """One copy of every batch-norm weight and bias per inner-loop state ``0..steps``.

    Args:
        graph: the model (its batch-norm layers give the keys and the starting values).
        steps: the inner steps of meta-training ``S`` (``S + 1`` states).

    Raises:
        ValueError: the model has no batch-norm layer.
    """

    def __init__(self, *, graph: ModuleGraph, steps: int) -> None:
        super().__init__()
        self.keys = batch_norm_keys(graph)
        if not self.keys:
            raise ValueError("per_step_bn: the model has no batch-norm layer")
        self.steps = steps
        params = dict(graph.named_parameters())
        self.copies = nn.ParameterDict(
            {
                safe_name(f"{k}.state{s}"): nn.Parameter(params[k].detach().clone())
                for s in range(steps + 1)
                for k in self.keys
            }
        )

    def at(self, s: int) -> dict[str, torch.Tensor]:
        """The batch-norm parameters of the model after ``s`` inner steps."""
        s = min(s, self.steps)
        return {k: self.copies[safe_name(f"{k}.state{s}")] for k in self.keys}

    def states(self, frozen: Params, steps: int) -> list[Params]:
        """``frozen`` with each state's copies, for states ``0..steps`` (``adapt``'s per-step list)."""
        return [{**frozen, **self.at(s)} for s in range(steps + 1)]
