"""``ModuleGraph``: typed modules wired into a validated DAG, compiled once into a call plan."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch
from torch import nn
from torch.func import functional_call

from metacompose.modules.base import TypedModule
from metacompose.modules.registry import build_module
from metacompose.modules.space import Space

MERGE_OPS = ("sum", "concat")


class GraphError(ValueError):
    """An invalid module graph; the message names the offending node or edge."""


@dataclass(frozen=True)
class PlanStep:
    """One entry of the compiled call plan: run ``node`` on its (merged) ``inputs``."""

    node: str
    inputs: tuple[str, ...]
    merge: str | None


class ModuleGraph(nn.Module):
    """Typed modules as nodes of a networkx DiGraph with typed edges.

    The graph has exactly one source (it receives the input batch) and one sink (its output is the
    graph's output). A node with several incoming edges merges them with a declared op: ``"sum"``
    (all inputs of the node's input space) or ``"concat"`` (vec inputs whose sizes add up to it).
    Construction validates all of this and raises :class:`GraphError` naming the node or edge at
    fault; it then compiles a topological call plan so that ``forward`` never walks networkx.

    Parameters are named ``"<node>.<param>"`` (e.g. ``"head.linear.weight"``), so an inner-loop
    scope is a set of node names. Call it functionally with ``graph.apply_params(params, x)``.

    Args:
        nodes: node name -> module; names are Python identifiers (no dots).
        edges: ``(src, dst)`` pairs.
        merge: node name -> merge op, for every node with more than one incoming edge.
    """

    def __init__(
        self,
        *,
        nodes: dict[str, TypedModule],
        edges: list[tuple[str, str]],
        merge: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        merge = dict(merge or {})
        self.graph = _validate(nodes, [tuple(e) for e in edges], merge)
        for name, module in nodes.items():
            self.add_module(name, module)
        self.merge_ops = merge
        self.source = next(n for n in self.graph if self.graph.in_degree(n) == 0)
        self.sink = next(n for n in self.graph if self.graph.out_degree(n) == 0)
        order = list(nx.lexicographical_topological_sort(self.graph))
        self.plan: tuple[PlanStep, ...] = tuple(
            PlanStep(n, tuple(sorted(self.graph.predecessors(n))), merge.get(n)) for n in order
        )

    # ----------------------------------------------------------------------------------- types
    @property
    def in_space(self) -> Space:
        return self.node(self.source).in_space

    @property
    def out_space(self) -> Space:
        return self.node(self.sink).out_space

    def node(self, name: str) -> TypedModule:
        module = self._modules.get(name)
        if module is None:
            raise KeyError(f"graph has no node {name!r}; nodes: {list(self.graph)}")
        return module  # type: ignore[return-value]

    @property
    def node_names(self) -> list[str]:
        return [s.node for s in self.plan]

    def param_keys(self, nodes: list[str] | None = None) -> list[str]:
        """Parameter names, optionally only those of the given nodes (an inner-loop scope)."""
        for n in nodes or []:
            self.node(n)
        return param_keys_of(self, nodes)

    # ----------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *in_space.shape) -> (B, *out_space.shape)`` following the compiled plan."""
        values: dict[str, torch.Tensor] = {}
        for step in self.plan:
            if not step.inputs:
                h = x
            elif step.merge is None:
                h = values[step.inputs[0]]
            elif step.merge == "sum":
                h = values[step.inputs[0]]
                for name in step.inputs[1:]:
                    h = h + values[name]
            else:
                h = torch.cat([values[name] for name in step.inputs], dim=-1)
            values[step.node] = self._modules[step.node](h)
        return values[self.sink]

    def apply_params(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Forward with ``params`` in place of the graph's own (missing keys use the graph's own)."""
        return functional_call(self, params, (x,), strict=False)

    # ----------------------------------------------------------------------------------- export
    def to_json_dict(self) -> dict[str, Any]:
        """Structure only (module types, args, spaces, edges); weights live in a state dict."""
        return {
            "format": "metacompose.ModuleGraph/1",
            "nodes": [{"name": s.node, **module_json(self.node(s.node))} for s in self.plan],
            "edges": [
                {"src": u, "dst": v, "space": d["space"].to_json()}
                for u, v, d in sorted(self.graph.edges(data=True))
            ],
            "merge": dict(sorted(self.merge_ops.items())),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), indent=2)

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> ModuleGraph:
        try:
            nodes = {n["name"]: module_from_json(n) for n in data["nodes"]}
            edges = [(e["src"], e["dst"]) for e in data["edges"]]
        except (KeyError, TypeError) as e:
            raise GraphError(f"malformed graph JSON: missing or bad field {e}") from e
        return cls(nodes=nodes, edges=edges, merge=data.get("merge") or {})

    @classmethod
    def from_json(cls, text: str) -> ModuleGraph:
        return cls.from_json_dict(json.loads(text))


def module_json(module: TypedModule) -> dict[str, Any]:
    """A module's structure entry in graph / pool JSON: type, args, spaces, parameter count."""
    return {
        "type": type(module).__name__,
        "args": module.spec(),
        "in_space": module.in_space.to_json(),
        "out_space": module.out_space.to_json(),
        "num_parameters": module.num_parameters(),
    }


def module_from_json(entry: dict[str, Any]) -> TypedModule:
    """The module a :func:`module_json` entry describes (fresh weights).

    Raises:
        KeyError, TypeError: a missing or malformed ``type`` / ``args``.
    """
    return build_module(entry["type"], entry["args"])


def param_keys_of(module: nn.Module, children: list[str] | None = None) -> list[str]:
    """``module``'s parameter names, optionally only those under the named children."""
    names = [k for k, _ in module.named_parameters()]
    if children is None:
        return names
    prefixes = tuple(f"{c}." for c in children)
    return [k for k in names if k.startswith(prefixes)]


def _validate(
    nodes: dict[str, TypedModule], edges: list[tuple[str, str]], merge: dict[str, str]
) -> nx.DiGraph:
    if not nodes:
        raise GraphError("a graph needs at least one node")
    g = nx.DiGraph()
    for name, module in nodes.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise GraphError(f"node name {name!r} must be a Python identifier (no dots or spaces)")
        if not isinstance(module, TypedModule):
            raise GraphError(f"node {name!r} is a {type(module).__name__}, not a TypedModule")
        g.add_node(name)
    for src, dst in edges:
        for end in (src, dst):
            if end not in nodes:
                raise GraphError(f"edge {src} -> {dst}: unknown node {end!r}")
        if src == dst:
            raise GraphError(f"edge {src} -> {dst} is a self-loop")
        if g.has_edge(src, dst):
            raise GraphError(f"edge {src} -> {dst} is given twice")
        g.add_edge(src, dst, space=nodes[src].out_space)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        pass
    else:
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        raise GraphError(f"graph has a cycle: {path}")
    sources = sorted(n for n in g if g.in_degree(n) == 0)
    sinks = sorted(n for n in g if g.out_degree(n) == 0)
    if len(sources) != 1:
        raise GraphError(f"graph needs exactly one input node, found {sources}")
    if len(sinks) != 1:
        raise GraphError(f"graph needs exactly one output node, found {sinks}")
    for name in merge:
        if name not in nodes:
            raise GraphError(f"merge declared for unknown node {name!r}")
    for name in g:
        _check_inputs(name, nodes, sorted(g.predecessors(name)), merge.get(name))
    return g


def _check_inputs(name: str, nodes: dict, preds: list[str], op: str | None) -> None:
    want = nodes[name].in_space
    if len(preds) <= 1:
        if op is not None:
            raise GraphError(f"node {name!r} declares merge {op!r} but has {len(preds)} input(s)")
        if preds and nodes[preds[0]].out_space != want:
            got = nodes[preds[0]].out_space
            raise GraphError(f"edge {preds[0]} -> {name}: type mismatch, {got} does not fit {want}")
        return
    if op not in MERGE_OPS:
        raise GraphError(
            f"node {name!r} has inputs {preds} and needs a merge op in {MERGE_OPS}, got {op!r}"
        )
    spaces = [nodes[p].out_space for p in preds]
    if op == "sum":
        for p, s in zip(preds, spaces):
            if s != want:
                raise GraphError(f"edge {p} -> {name}: sum merge needs {want}, got {s}")
        return
    for p, s in zip(preds, spaces):
        if s.kind not in ("vec", "embedding") or len(s.shape) != 1:
            raise GraphError(f"edge {p} -> {name}: concat merge needs flat vectors, got {s}")
    total = sum(s.dim for s in spaces)
    if want.kind != "vec" or want.dim != total:
        raise GraphError(
            f"node {name!r}: concat of {[str(s) for s in spaces]} gives vec[{total}], "
            f"but the node takes {want}"
        )
