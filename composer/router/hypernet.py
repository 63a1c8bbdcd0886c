"""The task encoder and the router hypernetwork: support set -> routing logits + modulations."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metacompose.modules.mlp import MLPBlock
from metacompose.modules.set_encoder import SetEncoder
from metacompose.router.modulation import ModTarget


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
    """``RouterOutput`` from a support set (and an optional task descriptor).

    The encoder (permutation invariant over the K support pairs) gives a task embedding; an optional
    descriptor (a ``(T, D)`` vector, or a ``(T,)`` categorical id through an embedding table) is
    concatenated; a trunk MLP then feeds one logits head per routed slot and one modulation head.
    The modulation head starts at zero (identity modulation), except the ``v`` factors of low-rank
    deltas, which start random so that ``u`` receives a gradient.

    Args:
        encoder: the set encoder, ``set[in + out] -> embedding[E]``.
        slot_sizes: routed slot -> number of candidates (empty: no logits heads, e.g. uniform
            routing).
        targets: modulated layers (empty: no modulation head).
        hidden: trunk width.
        descriptor_dim: size of a vector descriptor (0: none).
        descriptor_classes: number of categorical descriptor ids (0: none).
        film: generate FiLM ``gamma``/``beta`` (else only low-rank deltas, if ranked targets).
        descriptor_slots: routed slot -> ``[start, stop)`` of a vector descriptor. That slot's
            logits are a linear function of ``descriptor[:, start:stop]`` alone (program-given
            routing: e.g. the inner slot reads the one-hot of the inner primitive, the outer slot
            the one-hot of the outer one), so routing factorises over slots by construction;
            other slots keep their heads on the trunk.
        descriptor_one_to_one: start every ``descriptor_slots`` head as the one-to-one map
            "descriptor id i -> candidate i" (logit 5 for it, 0 for the others) instead of a
            random linear map; the map is still learned. Needs slices as wide as the slot's
            candidates.
        amortized: generate modulations from the task embedding (default). ``False``: one
            learned modulation for every task, so a task's own modulation comes only from the
            inner loop (and anchors): CAVIA-like, nothing read from an out-of-distribution
            support set.
        descriptor_local: each slot's modulations read the descriptor through that slot's own
            ``descriptor_slots`` slice only (the rest zeroed; the trunk runs once per slot), so
            the modulation of the inner module cannot depend on *which* outer module will read
            it: no per-pair convention can be learned through the descriptor, which is what an
            unseen pair would not share. Needs ``descriptor_slots`` for every modulated slot.
    """

    def __init__(
        self,
        *,
        encoder: SetEncoder,
        slot_sizes: dict[str, int],
        targets: list[ModTarget],
        hidden: int = 64,
        descriptor_dim: int = 0,
        descriptor_classes: int = 0,
        film: bool = True,
        descriptor_slots: dict[str, tuple[int, int]] | None = None,
        descriptor_one_to_one: bool = False,
        amortized: bool = True,
        descriptor_local: bool = False,
    ) -> None:
        super().__init__()
        self.amortized = bool(amortized)
        self.descriptor_local = bool(descriptor_local)
        if descriptor_dim and descriptor_classes:
            raise ValueError("give descriptor_dim or descriptor_classes, not both")
        self.descriptor_slots = {
            s: (int(a), int(b)) for s, (a, b) in (descriptor_slots or {}).items()
        }
        for slot, (start, stop) in self.descriptor_slots.items():
            if slot not in slot_sizes:
                raise ValueError(
                    f"descriptor_slots: {slot!r} is not a routed slot; routed: {sorted(slot_sizes)}"
                )
            if not 0 <= start < stop <= descriptor_dim:
                raise ValueError(
                    f"descriptor_slots.{slot}: [{start}, {stop}) is not a slice of the "
                    f"{descriptor_dim}-dim descriptor (router.descriptor_dim)"
                )
        self.encoder = encoder
        self.descriptor_dim = int(descriptor_dim)
        self.descriptor_embed = (
            nn.Embedding(descriptor_classes, encoder.out_space.dim) if descriptor_classes else None
        )
        width = encoder.out_space.dim * (2 if descriptor_classes else 1) + self.descriptor_dim
        self.trunk = MLPBlock(in_features=width, hidden=[], out_features=hidden)
        self.logits = nn.ModuleDict(
            {
                s: nn.Linear(
                    self.descriptor_slots[s][1] - self.descriptor_slots[s][0]
                    if s in self.descriptor_slots
                    else hidden,
                    c,
                )
                for s, c in slot_sizes.items()
            }
        )
        if descriptor_one_to_one:
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
        self.layout: list[tuple[str, tuple[int, ...]]] = []
        self.layout_slot: dict[str, str] = {}  # modulation key -> the slot it modulates
        for t in targets:
            for kind, shape in t.shapes().items():
                if kind in ("gamma", "beta") and not film:
                    continue
                self.layout.append((t.key(kind), shape))
                self.layout_slot[t.key(kind)] = t.slot
        sizes = [_numel(s) for _, s in self.layout]
        if self.descriptor_local and not self.amortized:
            raise ValueError("descriptor_local needs amortized (generated) modulations")
        if self.descriptor_local:
            missing = sorted(set(self.layout_slot.values()) - set(self.descriptor_slots))
            if missing or not self.descriptor_slots:
                raise ValueError(
                    f"descriptor_local needs a descriptor_slots slice for every modulated slot; "
                    f"missing: {missing or sorted(slot_sizes)}"
                )
        # not amortized: one learned modulation shared by all tasks (a Linear on a constant 1)
        self.modulation = (
            nn.Linear(hidden if amortized else 1, sum(sizes), bias=amortized) if sizes else None
        )
        if self.modulation is not None:
            keep = torch.zeros(sum(sizes), dtype=torch.bool)
            start = 0
            for (key, _), n in zip(self.layout, sizes):
                keep[start : start + n] = key.endswith(".v")
                start += n
            with torch.no_grad():
                self.modulation.weight[~keep] = 0.0
                if self.modulation.bias is not None:
                    self.modulation.bias.zero_()
                self.modulation.weight[keep] *= 3.0  # v rows: ~unit-scale random factors

    def forward(
        self, support: torch.Tensor, descriptor: torch.Tensor | None = None
    ) -> RouterOutput:
        """``support``: ``(T, K, in + out)`` (see :func:`support_features`)."""
        e = self.encoder(support)
        if self.descriptor_dim or self.descriptor_embed is not None:
            if descriptor is None:
                raise ValueError("this router takes a task descriptor, but the batch has none")
            if self.descriptor_embed is not None:
                e = torch.cat([e, self.descriptor_embed(descriptor)], dim=-1)
            else:
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
            flat = self.modulation(h if self.amortized else torch.ones_like(h[:, :1]))
            local = {}
            if self.descriptor_local:
                width = e.shape[-1] - self.descriptor_dim
                for slot, (a, b) in self.descriptor_slots.items():
                    own = torch.zeros_like(descriptor.to(h))
                    own[:, a:b] = descriptor.to(h)[:, a:b]
                    local[slot] = self.modulation(self.trunk(torch.cat([e[:, :width], own], -1)))
            start = 0
            for key, shape in self.layout:
                n = _numel(shape)
                rows = local.get(self.layout_slot[key], flat)
                mods[key] = rows[:, start : start + n].reshape(-1, *shape)
                start += n
        return RouterOutput(embedding=e, logits=logits, modulations=mods)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
