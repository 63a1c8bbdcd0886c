"""Typed interfaces between modules: a ``Space`` says what a tensor *is*, not only its shape."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("vec", "image", "set", "embedding")


@dataclass(frozen=True)
class Space:
    """The type of one example flowing along a graph edge (the batch dimension is not part of it).

    Args:
        kind: one of ``"vec"`` (a flat feature vector), ``"image"`` (C, H, W), ``"set"`` (N, D: a set
            of D-dim elements of any size N; only D is fixed) or ``"embedding"`` (a task-level vector).
        shape: the per-example shape; an int is promoted to a 1-tuple. For ``"set"`` it is (D,).

    Example:
        >>> Space("vec", 40)
        Space('vec', 40)
        >>> Space("image", (1, 28, 28)).numel
        784
    """

    kind: str
    shape: tuple[int, ...]

    def __init__(self, kind: str, shape: int | tuple[int, ...] | list[int]) -> None:
        if kind not in KINDS:
            raise ValueError(f"Space kind must be one of {KINDS}, got {kind!r}")
        shape_t = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
        if not shape_t or any(s <= 0 for s in shape_t):
            raise ValueError(f"Space shape must be non-empty and positive, got {shape!r}")
        if kind == "image" and len(shape_t) != 3:
            raise ValueError(f"an image Space needs (C, H, W), got {shape_t}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "shape", shape_t)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def dim(self) -> int:
        """Feature size of a ``vec``/``embedding``/``set`` space (its last dimension)."""
        return self.shape[-1]

    def to_json(self) -> dict:
        return {"kind": self.kind, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict) -> Space:
        return cls(data["kind"], tuple(data["shape"]))

    def __repr__(self) -> str:
        shape = self.shape[0] if len(self.shape) == 1 else self.shape
        return f"Space({self.kind!r}, {shape})"

    def __str__(self) -> str:
        return f"{self.kind}{list(self.shape)}"
