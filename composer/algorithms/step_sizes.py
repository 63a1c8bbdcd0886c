"""Meta-SGD's learned per-parameter step sizes, stored under module-safe names."""

from __future__ import annotations

import torch
from torch import nn

from metacompose.algorithms.inner_loop import Params


def safe_name(key: str) -> str:
    """A parameter key as an ``nn.ParameterDict`` name: ``"a.b"`` -> ``"a__b"``, ``"*"`` -> ``"all"``
    (a modulation shared by every candidate, ``"mod.inner.*.x"``)."""
    return key.replace(".", "__").replace("*", "all")


def learned_step_sizes(params: Params, init: float) -> nn.ParameterDict:
    """One learned step size per entry of every tensor in ``params``, all starting at ``init``
    (in the order of ``params``: the optimizer's and checkpoints' parameter order)."""
    sizes = nn.ParameterDict()
    for k, v in params.items():
        sizes[safe_name(k)] = nn.Parameter(torch.full_like(v, init))
    return sizes
