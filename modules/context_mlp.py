"""``ContextMLP``: an MLP of its input and a per-task context vector, ``f(x, c)`` (CAVIA).

Zintgraf et al. (2019, "Fast context adaptation via meta-learning") adapt only a small context
vector fed to the network as an extra input, starting every task at zero, while the network's
weights are meta-learned. Here the context is a parameter of the module, initialised to zero and
excluded from meta-training (``requires_grad=False``): the inner loop adapts it per task when the
learner names it (a routed pool: ``algo.adapt: [inner.*.context]``), so the module computes a
family of functions ``x -> f(x, c)``, one per task, as a primitive with its own per-task parameter
does.
"""

from __future__ import annotations

import torch
from torch import nn

from metacompose.modules.base import TypedModule
from metacompose.modules.mlp import MLPBlock
from metacompose.modules.space import Space


class ContextMLP(TypedModule):
    """``vec[in_features] -> vec[out_features]``: an :class:`MLPBlock` of ``[x, scale * c]``.

    Args:
        in_features: input dimension (without the context).
        context: context dimension; the parameter ``context`` ``(context,)`` starts at zero and is
            never meta-learned (``requires_grad=False``); adapting it is the inner loop's business.
        hidden: widths of the hidden layers.
        out_features: output dimension.
        activation: activation between layers.
        activate_output: also apply the activation after the last layer.
        context_scale: the context enters the MLP multiplied by this factor, so that an inner SGD
            step of size ``lr`` moves it as a step of ``lr * context_scale**2`` on an unscaled input.
    """

    def __init__(
        self,
        *,
        in_features: int,
        context: int,
        hidden: list[int] | tuple[int, ...] = (),
        out_features: int,
        activation: str = "relu",
        activate_output: bool = True,
        context_scale: float = 1.0,
    ) -> None:
        if context < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        hidden = [int(h) for h in hidden]
        super().__init__(
            in_space=Space("vec", in_features),
            out_space=Space("vec", out_features),
            in_features=in_features,
            context=context,
            hidden=hidden,
            out_features=out_features,
            activation=activation,
            activate_output=activate_output,
            context_scale=context_scale,
        )
        self.context_scale = float(context_scale)
        self.context = nn.Parameter(torch.zeros(context), requires_grad=False)
        self.mlp = MLPBlock(
            in_features=in_features + context,
            hidden=hidden,
            out_features=out_features,
            activation=activation,
            activate_output=activate_output,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_features) -> (B, out_features)``; the context is the same for every row."""
        c = (self.context_scale * self.context).expand(*x.shape[:-1], -1)
        return self.mlp(torch.cat([x, c], dim=-1))
