"""Whether code runs inside a ``torch.func`` transform: custom autograd functions without
functorch rules must then step aside for torch's own kernels."""

from __future__ import annotations

import torch


def inside_transform(*tensors: torch.Tensor | None) -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``vmap``, ``jvp``, ...) is active, or any of
    ``tensors`` is wrapped by one (a transform may differentiate through values it did not wrap)."""
    functorch = torch._C._functorch
    if functorch.peek_interpreter_stack() is not None:
        return True
    return any(t is not None and functorch.is_functorch_wrapped_tensor(t) for t in tensors)
