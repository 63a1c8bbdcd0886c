"""Learned modulation anchors: a multi-start over the modulation space that composes per slot.

Each task starts its inner loop from the generated modulations plus, per modulated slot, one anchor
(of ``count``) chosen by coordinate descent on the support loss before any inner step: each slot in
turn takes its best anchor with the others fixed, until no choice changes (at most ``rounds``
rounds). No query data is read; only the picked anchors get the meta-gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from metacompose.algorithms.inner_loop import Params
from metacompose.algorithms.step_sizes import safe_name

SupportLoss = Callable[[Params, torch.Tensor, torch.Tensor], torch.Tensor]


class ModulationAnchors(nn.Module):
    """``count`` learned anchors per generated modulation tensor.

    Args:
        layout: modulation key -> shape, in the router's order (anchors ``(count, *shape)``).
        slot_of: modulation key -> the slot it modulates (anchors are picked per slot).
        count: anchors per modulation tensor.
        init: standard deviation of the anchors' random start (drawn from the global generator,
            which the builder seeds).
        rounds: at most this many coordinate-descent rounds.
    """

    def __init__(
        self,
        *,
        layout: list[tuple[str, tuple[int, ...]]],
        slot_of: dict[str, str],
        count: int,
        init: float = 0.5,
        rounds: int = 4,
    ) -> None:
        super().__init__()
        if count < 1 or init < 0 or rounds < 1 or not layout:
            raise ValueError(
                f"anchors need generated modulations, count >= 1, init >= 0 and rounds >= 1; got "
                f"{len(layout)} modulation tensors, {count}, {init}, {rounds}"
            )
        self.slot_of = {k: slot_of[k] for k, _ in layout}
        self.count, self.rounds = int(count), int(rounds)
        drawn = {safe_name(k): init * torch.randn(count, *shape) for k, shape in layout}
        for name in sorted(drawn):  # drawn in layout order, kept in name order (as before)
            self.register_parameter(name, nn.Parameter(drawn[name]))

    def anchor(self, key: str) -> torch.Tensor:
        """``(count, *shape)`` anchors of modulation ``key``."""
        return self.get_parameter(safe_name(key))

    @torch.no_grad()
    def pick(self, fast: Params, x: torch.Tensor, y: torch.Tensor, loss: SupportLoss) -> dict:
        """slot -> ``(T,)`` anchor ids by coordinate descent on ``loss(trial_fast, x, y)`` -> ``(T,)``
        (``fast``: per-task tensors ``(T, ...)`` with the generated modulations; ``x, y``: support)."""
        slots = list(dict.fromkeys(self.slot_of.values()))
        t, n, device = x.shape[0], self.count, x.device
        pick = {s: torch.zeros(t, dtype=torch.int64, device=device) for s in slots}
        every = torch.arange(n, device=device)[:, None].expand(-1, t)
        for _ in range(self.rounds):
            changed = False
            for s in slots:
                choice = {r: pick[r].expand(n, t) for r in slots}
                choice[s] = every
                losses = self._losses(choice, fast, x, y, loss).view(n, t)
                best = losses.nan_to_num(float("inf")).argmin(dim=0)
                changed = changed or bool((best != pick[s]).any())
                pick[s] = best
            if not changed:
                break
        return pick

    def _losses(self, choice: dict, fast: Params, x, y, loss: SupportLoss) -> torch.Tensor:
        """Support losses ``(M * T,)`` of M choices at once (slot -> ``(M, T)`` anchor ids), as one
        call over ``M * T`` task copies."""
        m = next(iter(choice.values())).shape[0]
        trial = {k: v.repeat(m, *[1] * (v.dim() - 1)) for k, v in fast.items()}
        for k, slot in self.slot_of.items():
            trial[k] = trial[k] + self.anchor(k)[choice[slot].flatten()]
        x, y = (v.repeat(m, *[1] * (v.dim() - 1)) for v in (x, y))
        return loss(trial, x, y)

    def add(self, modulations: Params, pick: dict[str, torch.Tensor]) -> None:
        """Add each task's picked anchors to ``modulations`` (``(T, *shape)`` per key), in place."""
        for k, slot in self.slot_of.items():
            modulations[k] = modulations[k] + self.anchor(k)[pick[slot]]
