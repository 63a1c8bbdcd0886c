"""Convert a ``ModuleGraph`` and a parameter dict into the symbolic layer's piecewise-linear IR.

Supported modules: ``Linear``, ``RegressionHead``, ``ClassificationHead``, ``MLPBlock`` and
``ResidualMLPBlock`` with ReLU activations, on flat vector spaces, merged by ``sum`` or
``concat``. Anything else (a conv block with batch norm, tanh, a set encoder, a router's
``ModulePool`` before export) raises :class:`UnsupportedModuleError` naming the node.

IR Affine nodes are named ``"<graph node>.<layer path>"`` (e.g. ``"body.layers.0"``), so the IR's
default module grouping (:meth:`symbolic.NetworkPair.module_params`) is the graph's node names,
which is what trust regions in a stability spec name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from metacompose.graph import ModuleGraph
from metacompose.modules.base import TypedModule
from metacompose.modules.linear import ClassificationHead, Linear, RegressionHead
from metacompose.modules.mlp import MLPBlock, ResidualMLPBlock
from metacompose.symbolic import INPUT, Add, Affine, Concat, Network, NetworkPair, Node, ReLU

Params = dict[str, torch.Tensor]


class UnsupportedModuleError(ValueError):
    """A graph the symbolic IR cannot represent exactly; the message names the node and why."""


def graph_to_network(graph: ModuleGraph, params: Params | None = None) -> Network:
    """The exact piecewise-linear IR of ``graph`` with ``params`` (float64).

    Args:
        graph: a validated module graph (a router's pool must be exported per task first).
        params: ``"<node>.<param>"`` -> tensor, without a task dimension; missing keys fall back
            to the graph's own parameters.

    Raises:
        UnsupportedModuleError: a node whose module or activation has no exact IR.
    """
    if not isinstance(graph, ModuleGraph):
        raise UnsupportedModuleError(
            f"verification needs a ModuleGraph, got {type(graph).__name__} (export a routed pool "
            "per task with ModulePool.export_graph first)"
        )
    own = dict(graph.named_parameters())
    full = {**own, **(params or {})}
    nodes: list[Node] = []
    outputs: dict[str, str] = {}  # graph node -> IR node holding its output
    for step in graph.plan:
        module = graph.node(step.node)
        if module.in_space.kind != "vec" or module.out_space.kind != "vec":
            raise UnsupportedModuleError(
                f"node {step.node!r} ({type(module).__name__}): spaces {module.in_space} -> "
                f"{module.out_space}; only flat vec spaces convert"
            )
        if not step.inputs:
            h = INPUT
        elif step.merge is None:
            h = outputs[step.inputs[0]]
        else:
            h = f"{step.node}.merge"
            op = Add() if step.merge == "sum" else Concat()
            nodes.append(Node(h, op, tuple(outputs[i] for i in step.inputs)))
        converter = CONVERTERS.get(type(module))
        if converter is None:
            raise UnsupportedModuleError(
                f"node {step.node!r}: module {type(module).__name__} has no exact IR; supported: "
                f"{sorted(c.__name__ for c in CONVERTERS)} with ReLU activations"
            )
        outputs[step.node] = converter(step.node, module, full, h, nodes)
    return Network(input_dim=graph.in_space.dim, nodes=nodes, output=outputs[graph.sink])


def pair_from_params(graph: ModuleGraph, meta: Params, adapted: Params) -> NetworkPair:
    """The meta-learned network and its adapted twin (each a full or partial parameter dict)."""
    return NetworkPair(meta=graph_to_network(graph, meta), adapted=graph_to_network(graph, adapted))


def module_params(graph: ModuleGraph, meta: Params, adapted: Params) -> dict[str, tuple]:
    """Every parameter per graph node, ``node -> (meta tensors, adapted tensors)`` (trust regions)."""
    own = dict(graph.named_parameters())
    out: dict[str, tuple[list, list]] = {}
    for k, v in own.items():
        m, a = out.setdefault(k.split(".")[0], ([], []))
        m.append(meta.get(k, v).detach())
        a.append(adapted.get(k, v).detach())
    return out


def _affine(prefix: str, layer: nn.Linear, full: Params) -> Affine:
    w = full[f"{prefix}.weight"]
    b = full.get(f"{prefix}.bias")
    if b is None:
        b = torch.zeros(layer.out_features, dtype=w.dtype)
    return Affine(w.detach(), b.detach())


def _need_relu(node: str, module: TypedModule, act: str) -> None:
    if act != "relu":
        raise UnsupportedModuleError(
            f"node {node!r} ({type(module).__name__}): activation {act!r} has no exact "
            "piecewise-linear IR; only 'relu' converts"
        )


def _linear(node: str, module: TypedModule, full: Params, h: str, nodes: list[Node]) -> str:
    name = f"{node}.linear"
    nodes.append(Node(name, _affine(name, module.linear, full), (h,)))
    return name


def _mlp(node: str, module: MLPBlock, full: Params, h: str, nodes: list[Node]) -> str:
    _need_relu(node, module, module.spec()["activation"])
    for i, layer in enumerate(module.layers):
        name = f"{node}.layers.{i}"
        if isinstance(layer, nn.Linear):
            nodes.append(Node(name, _affine(name, layer, full), (h,)))
        elif isinstance(layer, nn.ReLU):
            nodes.append(Node(name, ReLU(), (h,)))
        else:  # pragma: no cover - MLPBlock only builds Linear + activation
            raise UnsupportedModuleError(f"node {node!r}: layer {i} is {type(layer).__name__}")
        h = name
    return h


def _residual(node: str, module: ResidualMLPBlock, full: Params, h: str, nodes: list[Node]) -> str:
    _need_relu(node, module, module.spec()["activation"])
    x = h
    nodes.append(Node(f"{node}.inner", _affine(f"{node}.inner", module.inner, full), (x,)))
    nodes.append(Node(f"{node}.act", ReLU(), (f"{node}.inner",)))
    nodes.append(
        Node(f"{node}.outer", _affine(f"{node}.outer", module.outer, full), (f"{node}.act",))
    )
    nodes.append(Node(f"{node}.sum", Add(), (x, f"{node}.outer")))
    if not module.spec()["activate_output"]:
        return f"{node}.sum"
    nodes.append(Node(f"{node}.out_act", ReLU(), (f"{node}.sum",)))
    return f"{node}.out_act"


Converter = Callable[[str, TypedModule, Params, str, list[Node]], str]
CONVERTERS: dict[type, Converter] = {
    Linear: _linear,
    RegressionHead: _linear,
    ClassificationHead: _linear,
    MLPBlock: _mlp,
    ResidualMLPBlock: _residual,
}
