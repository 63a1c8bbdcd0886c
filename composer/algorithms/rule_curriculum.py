"""Networks a learned update rule is meta-trained on besides its own: fresh MLPs of random width
and activation from a random initialisation, so that the rule is not fitted to one network and
one starting point (the learned-optimizer literature's task augmentation: VeLO, small_fc_lopt).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metacompose.algorithms.inner_loop import Params
from metacompose.graph import ModuleGraph
from metacompose.models import mlp_graph
from metacompose.tasks.base import derive_seed


@dataclass(frozen=True)
class RandomNetworks:
    """A fresh MLP for some meta-iterations, drawn from the meta-iteration's seed.

    Args:
        prob: share of meta-iterations that unroll the rule on a fresh network (0: never).
        widths: hidden widths to draw from (every hidden layer has the drawn width).
        activations: activation names to draw from.
        depth: hidden layers.
        in_features / out_features: the task family's input and output sizes.
    """

    prob: float
    widths: tuple[int, ...]
    activations: tuple[str, ...]
    depth: int
    in_features: int
    out_features: int

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"random_net_prob must be in [0, 1], got {self.prob}")
        if self.prob and (not self.widths or not self.activations or self.depth < 1):
            raise ValueError("random networks need widths, activations and depth >= 1")

    def draw(
        self, step: int, like: torch.Tensor | None = None
    ) -> tuple[ModuleGraph, Params] | None:
        """``(graph, its random initial parameters)`` for meta-iteration ``step``, or ``None``
        (train on the learner's own network); on the device and dtype of ``like`` (the inputs)."""
        if not self.prob:
            return None
        g = torch.Generator().manual_seed(derive_seed(step, "learned-opt-networks") % 2**63)
        if float(torch.rand((), generator=g)) >= self.prob:
            return None
        width = self.widths[int(torch.randint(len(self.widths), (), generator=g))]
        act = self.activations[int(torch.randint(len(self.activations), (), generator=g))]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**31, (), generator=g)))
            graph = mlp_graph(in_features=self.in_features, hidden=[width] * self.depth,
                              out_features=self.out_features, activation=act)  # fmt: skip
        if like is not None:
            graph = graph.to(like.device, like.dtype)
        graph.requires_grad_(False)
        return graph, {k: v.detach() for k, v in graph.named_parameters()}
