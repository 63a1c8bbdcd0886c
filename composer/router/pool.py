"""``ModulePool``: a composition template whose slots each hold several interchangeable candidates.

A template is a DAG of *slots* (validated like a ``ModuleGraph``). A slot holds one or more candidate
modules with identical interfaces; per task, a routing weight vector over the candidates (one-hot
when routing is hard) mixes their outputs. With one candidate a slot is an ordinary shared node.

Parameters are named ``"<slot>.<candidate>.<param>"`` (e.g. ``"inner.2.layers.0.weight"``). The
pool is called functionally with a flat dict that may also hold, per task, the routing weights
``"route.<slot>"`` ``(C,)`` and the generated modulations (see :mod:`metacompose.router.modulation`).
"""

from __future__ import annotations

import copy
import fnmatch
import json
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from metacompose.graph import (
    MERGE_OPS,
    GraphError,
    ModuleGraph,
    module_from_json,
    module_json,
    param_keys_of,
)
from metacompose.modules.base import TypedModule
from metacompose.modules.registry import build_module
from metacompose.router.modulation import ModTarget, modulate, modulation_targets

POOL_FORMAT = "metacompose.ModulePool/1"
MAX_CANDIDATES = 64  # per slot: each candidate is a full module copy, and routing enumerates them
# Module arguments that are sizes (widths, channels, counts): a template value below 1 is refused.
SIZE_ARGS = (
    "in_features", "out_features", "features", "hidden", "context", "in_channels", "image_size",
    "filters", "depth", "n_classes",
)  # fmt: skip


def route_key(slot: str) -> str:
    return f"route.{slot}"


class ModulePool(nn.Module):
    """Candidates per slot, wired by a validated template DAG.

    Args:
        slots: slot name -> candidate modules (all with the same ``in_space`` and ``out_space``).
        edges: ``(src, dst)`` slot pairs.
        merge: slot name -> merge op for slots with several inputs (as in ``ModuleGraph``).
        unmodulated: slots whose layers the router does not modulate (no FiLM / low-rank delta
            is generated for them), e.g. to make the routed modules carry the function shape.

    Raises:
        GraphError: a candidate whose interface differs from the slot's first candidate, or an
            invalid template DAG (the message names the slot, candidate or edge).
    """

    shared = False  # each slot has candidates of its own (CandidateSlots)

    def __init__(
        self,
        *,
        slots: dict[str, list[TypedModule]],
        edges: list[tuple[str, str]],
        merge: dict[str, str] | None = None,
        unmodulated: list[str] | tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        for name in unmodulated:
            if name not in slots:
                raise GraphError(f"unmodulated slot {name!r} is not a template slot")
        for name, cands in slots.items():
            if not cands:
                raise GraphError(f"template slot {name!r} has no candidates")
            first = cands[0]
            for i, c in enumerate(cands[1:], start=1):
                if not isinstance(c, TypedModule):
                    raise GraphError(f"template slot {name!r}: candidate {i} is not a TypedModule")
                if (c.in_space, c.out_space) != (first.in_space, first.out_space):
                    raise GraphError(
                        f"template slot {name!r}: candidate {i} ({type(c).__name__}) has interface "
                        f"{c.in_space} -> {c.out_space}, but candidate 0 ({type(first).__name__}) "
                        f"has {first.in_space} -> {first.out_space}"
                    )
        # Candidate 0 of every slot stands for the slot: ModuleGraph validates the wiring.
        self.skeleton_plan = ModuleGraph(
            nodes={n: c[0] for n, c in slots.items()}, edges=edges, merge=merge
        ).plan
        self.edges = [tuple(e) for e in edges]
        self.merge_ops = dict(merge or {})
        self.unmodulated = tuple(n for n in slots if n in set(unmodulated))
        for name, cands in slots.items():
            self.add_module(name, nn.ModuleList(cands))
        self.slot_names = [s.node for s in self.skeleton_plan]
        self.num_candidates = {n: len(slots[n]) for n in self.slot_names}
        self.routed_slots = [n for n in self.slot_names if self.num_candidates[n] > 1]
        self.source = self.skeleton_plan[0].node
        self.sink = self.skeleton_plan[-1].node

    # ------------------------------------------------------------------------------ structure
    def candidate(self, slot: str, index: int) -> TypedModule:
        return self._modules[slot][index]  # type: ignore[index]

    @property
    def in_space(self):
        return self.candidate(self.source, 0).in_space

    @property
    def out_space(self):
        return self.candidate(self.sink, 0).out_space

    def param_keys(self, nodes: list[str] | None = None) -> list[str]:
        """Pool parameter names (``None``: all), in pool order: every parameter of each named slot,
        and, for an entry that is not a slot, the parameters whose names match it as a glob
        pattern (``"inner.*.context"``: the context of every candidate of slot ``inner``).

        Raises:
            KeyError: an entry that is neither a slot nor matches a parameter name.
        """
        if nodes is None:
            return param_keys_of(self)
        names = param_keys_of(self)
        picked: set[str] = set()
        for n in nodes:
            if n in self.num_candidates:
                picked.update(param_keys_of(self, [n]))
                continue
            matched = fnmatch.filter(names, n)
            if not matched:
                raise KeyError(
                    f"template has no slot {n!r} and no parameter name matches it; "
                    f"slots: {self.slot_names}"
                )
            picked.update(matched)
        return [k for k in names if k in picked]

    def modulation_targets(self, *, low_rank: int) -> list[ModTarget]:
        """Every layer that generated per-task modulations act on (see ``modulation_targets``);
        none in ``unmodulated`` slots."""
        return modulation_targets(
            {n: list(self._modules[n]) for n in self.slot_names if n not in self.unmodulated},
            low_rank=low_rank,
        )

    # ------------------------------------------------------------------------------ forward
    def apply_params(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """One task: ``(B, *in_space.shape) -> (B, *out_space.shape)``.

        ``params`` overrides pool parameters by name, and may hold ``"route.<slot>"`` ``(C,)``
        routing weights (default: uniform) and modulations ``"mod.*"`` (default: none).
        """
        values: dict[str, torch.Tensor] = {}
        for step in self.skeleton_plan:
            if not step.inputs:
                h = x
            elif step.merge is None:
                h = values[step.inputs[0]]
            elif step.merge == "sum":
                h = sum(values[n] for n in step.inputs[1:]) + values[step.inputs[0]]
            else:
                h = torch.cat([values[n] for n in step.inputs], dim=-1)
            values[step.node] = self._slot_forward(step.node, params, h)
        return values[self.sink]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_params({}, x)

    def candidate_params(
        self, slot: str, index: int, params: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The (modulated) weights of one candidate, named as in its own ``named_parameters()``."""
        module = self.candidate(slot, index)
        prefix = f"{slot}.{index}."
        own = {k: params.get(prefix + k, v) for k, v in module.named_parameters()}
        return modulate(own, params, slot=slot, candidate=index)

    def _slot_forward(self, slot: str, params: dict[str, torch.Tensor], h: torch.Tensor):
        n = self.num_candidates[slot]
        outs = [
            functional_call(self.candidate(slot, i), self.candidate_params(slot, i, params), (h,))
            for i in range(n)
        ]
        if n == 1:
            return outs[0]
        w = params.get(route_key(slot))
        if w is None:
            w = torch.full((n,), 1.0 / n, dtype=h.dtype, device=h.device)
        stacked = torch.stack(outs)  # (C, B, ...)
        return (w.view(n, *([1] * (stacked.dim() - 1))) * stacked).sum(0)

    # ------------------------------------------------------------------------------ export
    def export_graph(
        self, choice: dict[str, int], params: dict[str, torch.Tensor]
    ) -> tuple[ModuleGraph, dict[str, torch.Tensor]]:
        """The explicit ``ModuleGraph`` of one task under hard routing, and its weights.

        Args:
            choice: slot -> chosen candidate (slots with one candidate may be omitted).
            params: one task's parameters (pool weights, modulations; no task dimension).

        Returns:
            ``(graph, weights)``: nodes named like the slots, holding copies of the chosen
            candidates; ``weights`` (``"<slot>.<param>"``) fold in the task's modulations, so that
            ``graph.apply_params(weights, x)`` equals the pool under one-hot routing.
        """
        nodes, weights = {}, {}
        for slot in self.slot_names:
            i = choice.get(slot, 0)
            nodes[slot] = copy.deepcopy(self.candidate(slot, i))
            for k, v in self.candidate_params(slot, i, params).items():
                weights[f"{slot}.{k}"] = v
        graph = ModuleGraph(nodes=nodes, edges=self.edges, merge=self.merge_ops)
        return graph, weights

    def to_json_dict(self) -> dict[str, Any]:
        """Structure only: slots with their candidates' types, args and spaces; edges; merges."""
        return {
            "format": POOL_FORMAT,
            "slots": [
                {
                    "name": n,
                    "candidates": [module_json(c) for c in self._modules[n]],
                    "modulated": n not in self.unmodulated,
                }
                for n in self.slot_names
            ],
            "edges": [{"src": u, "dst": v} for u, v in sorted(self.edges)],
            "merge": dict(sorted(self.merge_ops.items())),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), indent=2)

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> ModulePool:
        try:
            slots = {
                s["name"]: [module_from_json(c) for c in s["candidates"]] for s in data["slots"]
            }
            edges = [(e["src"], e["dst"]) for e in data["edges"]]
            unmodulated = [s["name"] for s in data["slots"] if not s.get("modulated", True)]
        except (KeyError, TypeError) as e:
            raise GraphError(f"malformed module-pool JSON: missing or bad field {e}") from e
        return cls(slots=slots, edges=edges, merge=data.get("merge") or {}, unmodulated=unmodulated)


def build_pool(template: dict[str, Any], *, where: str = "router.template") -> ModulePool:
    """Build a pool from its YAML form, failing with the key at fault.

    The form is ``{"nodes": {slot: spec}, "edges": [[src, dst], ...], "merge": {slot: op}}`` where a
    ``spec`` is ``{type, args}`` (one shared module), ``{type, args, candidates: N}`` (N
    independently initialised copies) or ``{candidates: [{type, args}, ...]}`` (heterogeneous); any
    spec may add ``modulate: false`` (the router generates no modulations for that slot).
    """
    if not isinstance(template, dict) or "nodes" not in template:
        raise ValueError(f"{where}: needs a 'nodes' mapping (and 'edges')")
    unknown = set(template) - {"nodes", "edges", "merge"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: nodes, edges, merge")
    slots: dict[str, list[TypedModule]] = {}
    unmodulated: list[str] = []
    for name, spec in dict(template["nodes"]).items():
        at = f"{where}.nodes.{name}"
        if not isinstance(spec, dict):
            raise ValueError(f"{at}: must be a mapping with 'type'/'args' or 'candidates'")
        bad = set(spec) - {"type", "args", "candidates", "modulate"}
        if bad:
            raise ValueError(
                f"{at}: unknown key(s) {sorted(bad)}; known: type, args, candidates, modulate"
            )
        modulated = spec.get("modulate", True)
        if not isinstance(modulated, bool):
            raise ValueError(f"{at}.modulate: must be true or false, got {modulated!r}")
        if not modulated:
            unmodulated.append(name)
        slots[name] = []
        for i, (s, where_args) in enumerate(_candidate_specs(spec, at)):
            _check_sizes(s.get("args", {}), where_args)
            try:
                slots[name].append(build_module(s["type"], dict(s.get("args", {}))))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{at}.candidates[{i}]: {e}") from e
    edges = [tuple(e) for e in template.get("edges", [])]
    for e in edges:
        if len(e) != 2:
            raise ValueError(f"{where}.edges: each edge is [src, dst], got {list(e)}")
    try:
        return ModulePool(
            slots=slots,
            edges=edges,
            merge=_merge_ops(template.get("merge"), where),
            unmodulated=unmodulated,
        )
    except GraphError as e:
        raise GraphError(f"{where}: {e}") from e


def _candidate_specs(spec: dict[str, Any], at: str) -> list[tuple[dict[str, Any], str]]:
    """A slot's candidate specs ``{type, args}``, each with the key path of its ``args``.

    Raises:
        ValueError: ``candidates`` is not an integer or a list of 1..MAX_CANDIDATES entries, an
            entry is not a mapping, or a ``candidates: N`` slot has no ``type``.
    """
    cands = spec.get("candidates", 1)
    if isinstance(cands, int) and not isinstance(cands, bool):
        if not 1 <= cands <= MAX_CANDIDATES:
            raise ValueError(f"{at}.candidates: must be in 1..{MAX_CANDIDATES}, got {cands}")
        if "type" not in spec:
            raise ValueError(f"{at}: needs 'type' (the module of its {cands} candidate(s))")
        return [({"type": spec["type"], "args": spec.get("args", {})}, f"{at}.args")] * cands
    if not isinstance(cands, list | tuple):
        raise ValueError(
            f"{at}.candidates: expected an integer in 1..{MAX_CANDIDATES} or a list of "
            f"{{type, args}}, got {cands!r}"
        )
    if not 1 <= len(cands) <= MAX_CANDIDATES:
        raise ValueError(
            f"{at}.candidates: a list of 1..{MAX_CANDIDATES} entries, got {len(cands)} entries"
        )
    for i, c in enumerate(cands):
        if not isinstance(c, dict):
            raise ValueError(f"{at}.candidates[{i}]: expected a mapping {{type, args}}, got {c!r}")
    return [(c, f"{at}.candidates[{i}].args") for i, c in enumerate(cands)]


def _check_sizes(args: Any, at: str) -> None:
    """Refuse a size argument (:data:`SIZE_ARGS`, an integer or a list of them) below 1, naming
    its key path ``at.<name>`` and its value."""
    if not isinstance(args, dict):
        return  # build_module reports arguments that are not a mapping
    for name in SIZE_ARGS:
        value = args.get(name)
        values = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, int) and not isinstance(v, bool) and v < 1 for v in values):
            raise ValueError(f"{at}.{name}: sizes must be >= 1, got {value}")


def _merge_ops(merge: Any, where: str) -> dict[str, str]:
    """The template's ``merge`` mapping (slot -> op in ``MERGE_OPS``; unset: none).

    Raises:
        ValueError: ``merge`` is not a mapping, or names an op outside ``MERGE_OPS``.
    """
    if merge is None:
        return {}
    if not isinstance(merge, dict):
        raise ValueError(
            f"{where}.merge: expected a mapping slot -> one of {list(MERGE_OPS)}, got {merge!r}"
        )
    for slot, op in merge.items():
        if op not in MERGE_OPS:
            raise ValueError(f"{where}.merge.{slot}: expected one of {list(MERGE_OPS)}, got {op!r}")
    return dict(merge)
