"""The task encoder and the router hypernetwork: support set -> routing logits + modulations."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metacompose.modules.mlp import MLPBlock
from metacompose.modules.set_encoder import SetEncoder
from metacompose.router.modulation import ModTarget
from metacompose.tasks.base import TaskBatch


@dataclass
class RouterOutput:
    """What the router says about a meta-batch of T tasks.

    Attributes:
        embedding: ``(T, E)`` task embeddings (support-set encoding, with the descriptor if any).
        logits: slot -> ``(T, C_slot)`` selection logits (only routed slots).
        modulations: modulation key -> ``(T, *shape)`` generated per-task tensors.
    """

    embedding: torch.Tensor
    logits: dict[str, torch.Tensor]
    modulations: dict[str, torch.Tensor]


def support_features(x: torch.Tensor, y: torch.Tensor, n_classes: int = 0) -> torch.Tensor:
    """The set the task encoder reads: ``(T, K, in + out)`` pairs of flattened input and target.

    ``y`` is ``(T, K, out)`` for regression or ``(T, K)`` int64 labels (one-hot to ``n_classes``).
    """
    if not y.is_floating_point():
        y = F.one_hot(y, n_classes).to(x.dtype)
    return torch.cat([x.flatten(2), y.flatten(2)], dim=-1)


class RouterHypernetwork(nn.Module):
    """``RouterOutput`` from a support set (and an optional vector task descriptor).

    The encoder (permutation invariant over the K support pairs) gives a task embedding; an optional
    ``(T, D)`` descriptor is concatenated; a trunk MLP then feeds one logits head per routed slot
    and one modulation head. The modulation head starts at zero (identity modulation), except the
    ``v`` factors of low-rank deltas, which start random so that ``u`` receives a gradient.

    Args:
        encoder: the set encoder, ``set[in + out] -> embedding[E]``.
        slot_sizes: routed slot -> number of candidates (empty: no logits heads, e.g. uniform
            routing).
        targets: modulated layers (empty: no modulation head).
        hidden: trunk width.
        n_classes: classes of one-hot targets in the encoder input (classification; 0: regression).
        descriptor_dim: size of a vector descriptor (0: none).
        film: generate FiLM ``gamma``/``beta`` (else only low-rank deltas, if ranked targets).
        descriptor_slots: routed slot -> ``[start, stop)`` of the descriptor. That slot's logits
            are a linear function of ``descriptor[:, start:stop]`` alone (program-given routing:
            e.g. the inner slot reads the one-hot of the inner primitive), so routing factorises
            over slots by construction; other slots keep their heads on the trunk.
        descriptor_one_to_one: start every ``descriptor_slots`` head as the one-to-one map
            "descriptor id i -> candidate i" (logit 5 for it, 0 for the others) instead of a
            random linear map; the map is still learned. Needs slices as wide as the slot's
            candidates.
    """

    def __init__(
        self,
        *,
        encoder: SetEncoder,
        slot_sizes: dict[str, int],
        targets: list[ModTarget],
        hidden: int = 64,
        n_classes: int = 0,
        descriptor_dim: int = 0,
        film: bool = True,
        descriptor_slots: dict[str, tuple[int, int]] | None = None,
        descriptor_one_to_one: bool = False,
    ) -> None:
        super().__init__()
        self.n_classes, self.descriptor_dim = int(n_classes), int(descriptor_dim)
        self.descriptor_slots = _check_slices(descriptor_slots or {}, slot_sizes, descriptor_dim)
        self.encoder = encoder
        self.trunk = MLPBlock(
            in_features=encoder.out_space.dim + self.descriptor_dim, hidden=[], out_features=hidden
        )
        self.logits = nn.ModuleDict(
            {s: nn.Linear(self._head_width(s, hidden), c) for s, c in slot_sizes.items()}
        )
        if descriptor_one_to_one:
            self._start_one_to_one()
        self.layout: list[tuple[str, tuple[int, ...]]] = []
        self.layout_slot: dict[str, str] = {}  # modulation key -> the slot it modulates
        for t in targets:
            for kind, shape in t.shapes().items():
                if kind in ("gamma", "beta") and not film:
                    continue
                self.layout.append((t.key(kind), shape))
                self.layout_slot[t.key(kind)] = t.slot
        self.modulation = _modulation_head(hidden, self.layout) if self.layout else None

    def _head_width(self, slot: str, hidden: int) -> int:
        if slot in self.descriptor_slots:
            start, stop = self.descriptor_slots[slot]
            return stop - start
        return hidden

    def _start_one_to_one(self) -> None:
        if not self.descriptor_slots:
            raise ValueError("descriptor_one_to_one needs descriptor_slots")
        for slot in self.descriptor_slots:
            head = self.logits[slot]
            if head.in_features != head.out_features:
                raise ValueError(
                    f"descriptor_one_to_one: slot {slot!r} reads {head.in_features} "
                    f"descriptor entries but has {head.out_features} candidates"
                )
            with torch.no_grad():
                head.weight.copy_(5.0 * torch.eye(head.out_features))
                head.bias.zero_()

    def read(self, batch: TaskBatch) -> RouterOutput:
        """The router on ``batch``'s support set and descriptor."""
        return self(support_features(batch.support_x, batch.support_y, self.n_classes),
                    batch.descriptor)  # fmt: skip

    def forward(
        self, support: torch.Tensor, descriptor: torch.Tensor | None = None
    ) -> RouterOutput:
        """``support``: ``(T, K, in + out)`` (see :func:`support_features`)."""
        e = self.encoder(support)
        if self.descriptor_dim:
            if descriptor is None:
                raise ValueError("this router takes a task descriptor, but the batch has none")
            e = torch.cat([e, descriptor.to(e)], dim=-1)
        h = self.trunk(e)
        logits = {}
        for s, head in self.logits.items():
            if s in self.descriptor_slots:
                start, stop = self.descriptor_slots[s]
                logits[s] = head(descriptor.to(h)[:, start:stop])
            else:
                logits[s] = head(h)
        mods: dict[str, torch.Tensor] = {}
        if self.modulation is not None:
            flat = self.modulation(h)
            start = 0
            for key, shape in self.layout:
                n = _numel(shape)
                mods[key] = flat[:, start : start + n].reshape(-1, *shape)
                start += n
        return RouterOutput(embedding=e, logits=logits, modulations=mods)


def _check_slices(
    slices: dict[str, tuple[int, int]], slot_sizes: dict[str, int], dim: int
) -> dict[str, tuple[int, int]]:
    out = {s: (int(a), int(b)) for s, (a, b) in slices.items()}
    for slot, (start, stop) in out.items():
        if slot not in slot_sizes:
            raise ValueError(
                f"descriptor_slots: {slot!r} is not a routed slot; routed: {sorted(slot_sizes)}"
            )
        if not 0 <= start < stop <= dim:
            raise ValueError(
                f"descriptor_slots.{slot}: [{start}, {stop}) is not a slice of the "
                f"{dim}-dim descriptor (router.descriptor_dim)"
            )
    return out


def _modulation_head(hidden: int, layout: list[tuple[str, tuple[int, ...]]]) -> nn.Linear:
    """One linear map from the trunk to every modulation, zero (identity modulation) except the
    rows of low-rank ``v`` factors (random, ~unit scale)."""
    sizes = [_numel(s) for _, s in layout]
    head = nn.Linear(hidden, sum(sizes))
    keep = torch.zeros(sum(sizes), dtype=torch.bool)
    start = 0
    for (key, _), n in zip(layout, sizes):
        keep[start : start + n] = key.endswith(".v")
        start += n
    with torch.no_grad():
        head.weight[~keep] = 0.0
        head.bias.zero_()
        head.weight[keep] *= 3.0
    return head


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
