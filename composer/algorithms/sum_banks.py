"""What an annealed checkpoint stores of its model: the two slots' banks of candidates and the
replicas (:class:`~metacompose.algorithms.annealed_sum.AnnealedSumLearner`)."""

from __future__ import annotations

from typing import Any, Literal

from metacompose.modules.space import Space

SLOTS = ("f", "g")
Structure = Literal["sum", "chain"]
Routing = Literal["data", "descriptor", "uniform"]
# WarpLineBank arguments added after the first checkpoints, at the value those were built with
OPTIONAL_BANK_KEYS = {"max_stretch": 0.6, "max_shift": None, "init": "random", "g_span": None}


class SumBanks:
    """The model structure a checkpoint stores: the two slots' banks and the replicas.

    Attributes:
        routed_slots: ``("f", "g")``; num_candidates: slot -> candidates; shared: both slots
            choose from one bank (``num_candidates`` the same for both); bank: the
            :class:`WarpLineBank` keyword arguments of the f-banks (less ``count``), which the
            g-banks share but for ``span`` when ``bank["g_span"]`` is set.
    """

    def __init__(
        self, *, candidates: dict[str, int], replicas: int, bank: dict[str, Any],
        structure: Structure = "sum", shared: bool = False,
    ) -> None:  # fmt: skip
        self.num_candidates = {s: int(candidates[s]) for s in SLOTS}
        self.structure, self.shared = structure, bool(shared)
        self.routed_slots = list(SLOTS)
        self.replicas = int(replicas)
        self.bank = dict(bank)
        self.in_space = Space("vec", 1)
        self.out_space = Space("vec", 1)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "kind": "annealed_sum",
            "candidates": dict(self.num_candidates),
            "replicas": self.replicas,
            "bank": dict(sorted(self.bank.items())),
            "structure": self.structure,
        } | ({"shared": True} if self.shared else {})

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> SumBanks:
        if data.get("kind") != "annealed_sum":
            raise ValueError(f"not an annealed_sum structure: kind {data.get('kind')!r}")
        bank = OPTIONAL_BANK_KEYS | data["bank"]  # written before those options existed
        return cls(candidates=data["candidates"], replicas=data["replicas"], bank=bank,
                   structure=data.get("structure", "sum"),
                   shared=data.get("shared", False))  # fmt: skip
