"""The contract every reusable module keeps: typed spaces, owned parameters, a rebuildable spec."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from metacompose.modules.space import Space


class TypedModule(nn.Module):
    """Base class of the module library.

    A typed module declares its input and output :class:`Space`, owns its parameters, and can be
    called *functionally* with an explicit parameter dict (``module.apply_params(params, x)``), so
    that adapted weights never mutate the module. ``spec()`` returns the keyword arguments it was
    built from, so a graph can be serialised to JSON and rebuilt.

    Subclasses call ``super().__init__(in_space=..., out_space=..., **spec_kwargs)`` and implement
    ``forward(x)`` for a batch ``x`` of shape ``(B, *in_space.shape)``.
    """

    def __init__(self, *, in_space: Space, out_space: Space, **spec_kwargs: Any) -> None:
        super().__init__()
        self.in_space = in_space
        self.out_space = out_space
        self._spec = dict(spec_kwargs)

    def spec(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this module: ``type(self)(**self.spec())``."""
        return dict(self._spec)

    def apply_params(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Run the module with ``params`` (keys as in ``named_parameters()``) instead of its own."""
        return functional_call(self, params, (x,))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return f"{self.in_space} -> {self.out_space}"
