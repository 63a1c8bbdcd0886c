"""A conditional neural process (Garnelo et al. 2018): mean-pooled set encoder + decoder.

The simple baseline of the in-context family: each support pair ``(encoder(x), y)`` is mapped to a
representation, the representations are averaged (order-free), and a decoder predicts each query
from ``(encoder(x_q), mean)``.
"""

from __future__ import annotations

import torch
from torch import nn

from metacompose.algorithms.context_learner import ContextLearner, Likelihood, context_learner
from metacompose.graph import ModuleGraph
from metacompose.modules.sizes import check_sizes


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ConditionalNeuralProcess(nn.Module):
    """``(support_x, support_feat, query_x) -> (T, Q, out)`` through a mean-pooled representation.

    Args:
        encoder: per-example input encoder (``ModuleGraph``, ``(B, *in) -> (B, F)``).
        label_dim: width of a support target as an input; out_dim: outputs per query.
        hidden: width of the set encoder, the representation and the decoder; layers: linear
            layers of each of the two MLPs.

    Raises:
        ValueError: ``hidden`` or ``layers`` below 1 (the message names it and its value).
    """

    def __init__(
        self,
        *,
        encoder: ModuleGraph,
        label_dim: int,
        out_dim: int,
        hidden: int = 128,
        layers: int = 3,
    ) -> None:
        super().__init__()
        check_sizes(hidden=hidden, layers=layers)
        f = encoder.out_space.dim
        self.encoder = encoder
        self.set_encoder = _mlp([f + label_dim] + [hidden] * layers)
        self.decoder = _mlp([f + hidden] + [hidden] * (layers - 1) + [out_dim])

    def forward(self, support_x, support_feat, query_x) -> torch.Tensor:
        t, k, q = support_x.shape[0], support_x.shape[1], query_x.shape[1]
        e = self.encoder(torch.cat([support_x, query_x], 1).flatten(0, 1)).view(t, k + q, -1)
        r = self.set_encoder(torch.cat([e[:, :k], support_feat], -1)).mean(1, keepdim=True)
        return self.decoder(torch.cat([e[:, k:], r.expand(t, q, r.shape[-1])], -1))


def cnp_learner(
    *,
    encoder: ModuleGraph,
    targets: int,
    classification: bool,
    likelihood: Likelihood = "mse",
    hidden: int = 128,
    layers: int = 3,
    min_shots: int | None = None,
    nll_beta: float | None = None,
) -> ContextLearner:
    """The ``algo.name: cnp`` learner; ``algo.args`` sets ``likelihood``, ``hidden``, ``layers``,
    ``min_shots``, ``nll_beta`` (see :func:`metacompose.algorithms.incontext.incontext_learner`)."""
    return context_learner(
        predictor=ConditionalNeuralProcess,
        encoder=encoder,
        targets=targets,
        classification=classification,
        likelihood=likelihood,
        min_shots=min_shots,
        nll_beta=nll_beta,
        hidden=hidden,
        layers=layers,
    )
