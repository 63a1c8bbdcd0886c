"""Generated per-task weights: FiLM scale/shift per layer and an optional low-rank weight delta.

Modulations are folded into a layer's weights, so a modulated module is the same module with other
weights (which is what makes a per-task graph exportable as a plain ``ModuleGraph``). For a layer
with weight ``W`` ``(out, in...)`` and bias ``b`` ``(out,)``:

    W' = (1 + gamma)[:, None] * (W + (u @ v.T).view_as(W)),    b' = (1 + gamma) * b + beta

which is FiLM on the layer's pre-activation output (``gamma``, ``beta``: ``(out,)``) applied to a
rank-``r`` corrected weight (``u``: ``(out, r)``, ``v``: ``(prod(in...), r)``). Every parameter
named ``*weight`` with at least 2 dimensions is a target (Linear and conv layers).

Keys are ``"mod.<slot>.<tag>.<layer>.<kind>"`` with ``tag`` the candidate index, or ``"*"`` when the
slot's candidates all share parameter shapes (one modulation for whichever candidate is chosen), and
``kind`` in ``gamma``, ``beta``, ``u``, ``v``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metacompose.modules.base import TypedModule

SHARED = "*"


@dataclass(frozen=True)
class ModTarget:
    """One modulated layer. ``candidate`` is ``None`` when shared by all candidates of the slot."""

    slot: str
    candidate: int | None
    layer: str
    out_dim: int
    in_dim: int
    has_bias: bool
    rank: int

    def key(self, kind: str) -> str:
        tag = SHARED if self.candidate is None else str(self.candidate)
        return f"mod.{self.slot}.{tag}.{self.layer}.{kind}"

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-task shape of each generated tensor of this layer."""
        out = {"gamma": (self.out_dim,)}
        if self.has_bias:
            out["beta"] = (self.out_dim,)
        if self.rank > 0:
            out["u"] = (self.out_dim, self.rank)
            out["v"] = (self.in_dim, self.rank)
        return out


def modulation_targets(slots: dict[str, list[TypedModule]], *, low_rank: int) -> list[ModTarget]:
    """The modulated layers of every slot's candidates.

    Shared by the slot when its candidates with parameters all have the same parameter shapes;
    parameter-free candidates (``Identity``) are not modulated and do not break the sharing.
    """
    targets = []
    for slot, cands in slots.items():
        shapes = [[(k, tuple(p.shape)) for k, p in c.named_parameters()] for c in cands]
        owners = [i for i, s in enumerate(shapes) if s]
        shared = all(shapes[i] == shapes[owners[0]] for i in owners)
        for i in owners[:1] if shared else owners:
            c = cands[i]
            params = dict(c.named_parameters())
            for name, p in params.items():
                if not name.endswith("weight") or p.dim() < 2:
                    continue
                layer = name[: -len("weight")].rstrip(".")
                targets.append(
                    ModTarget(
                        slot=slot,
                        candidate=None if shared else i,
                        layer=layer,
                        out_dim=p.shape[0],
                        in_dim=p[0].numel(),
                        has_bias=_bias_name(layer) in params,
                        rank=low_rank,
                    )
                )
    return targets


def modulate(
    own: dict[str, torch.Tensor], params: dict[str, torch.Tensor], *, slot: str, candidate: int
) -> dict[str, torch.Tensor]:
    """Fold the modulations found in ``params`` into one candidate's weights ``own``.

    Args:
        own: the candidate's weights, named as in its ``named_parameters()`` (no task dimension).
        params: a flat dict that may hold ``"mod.<slot>.<tag>.<layer>.<kind>"`` entries.

    Returns:
        A new dict with modulated weights (``own`` itself if nothing applies).
    """
    out = dict(own)
    for tag in (SHARED, str(candidate)):
        head = f"mod.{slot}.{tag}."
        for name, w in own.items():
            if not name.endswith("weight") or w.dim() < 2:
                continue
            layer = name[: -len("weight")].rstrip(".")
            pre = head + (f"{layer}." if layer else "")
            gamma, beta = params.get(pre + "gamma"), params.get(pre + "beta")
            u, v = params.get(pre + "u"), params.get(pre + "v")
            if gamma is None and u is None:
                continue
            out[name], bias = film_fold(
                out[name], out.get(_bias_name(layer)), gamma=gamma, beta=beta, u=u, v=v
            )
            if bias is not None:
                out[_bias_name(layer)] = bias
    return out


def film_fold(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    u: torch.Tensor | None = None,
    v: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``W' = (1 + gamma) * (W + u v^T)``, ``b' = (1 + gamma) * b + beta`` (see module docstring)."""
    if u is not None and v is not None:
        weight = weight + (u @ v.T).view_as(weight)
    if gamma is not None:
        scale = 1.0 + gamma
        weight = scale.view(-1, *([1] * (weight.dim() - 1))) * weight
        if bias is not None:
            bias = scale * bias
    if bias is not None and beta is not None:
        bias = bias + beta
    return weight, bias


def _bias_name(layer: str) -> str:
    return f"{layer}.bias" if layer else "bias"
