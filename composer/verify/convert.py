"""Convert a ``ModuleGraph`` and a parameter dict into the symbolic layer's exact IR.

Supported modules: ``Linear``, ``RegressionHead``, ``ClassificationHead``, ``Identity``,
``MLPBlock`` and ``ResidualMLPBlock`` with ReLU or a smooth activation the IR means exactly
(tanh, sigmoid, sin, SiLU, exact GELU, Softplus with beta 1), merged by ``sum`` or ``concat``, and
``ConvBlock`` on image spaces (conv, batch norm with the task's batch statistics fixed, ReLU,
max-pool, flatten; lowered densely by :mod:`metacompose.symbolic.conv` while small, else kept as
structured Conv2d / MaxPool2d nodes of :mod:`metacompose.symbolic.image_ops`). A routed learner's per-task export
(``ModulePool.export_graph``) has its FiLM / low-rank modulations already folded into the weights.
Anything else (a set encoder, group norm, a pool before export, tanh-approximate GELU) raises
:class:`UnsupportedModuleError` naming the node.

Batch norm (``TaskBatchNorm2d``) normalises over the batch it is applied to; it is affine once
those statistics are fixed. :func:`graph_to_network` takes ``stats_x``, the batch the model
normalises (the task's query batch at evaluation, its support batch in the inner loop), computes
each layer's mean and variance from it in float64 with the given weights, and folds the
normalisation into the preceding conv. The certificate then speaks of that fixed affine map.

IR Affine nodes are named ``"<graph node>.<layer path>"`` (e.g. ``"body.layers.0"``), so the IR's
default module grouping (:meth:`symbolic.NetworkPair.module_params`) is the graph's node names,
which is what trust regions in a stability spec name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from metacompose.graph import ModuleGraph
from metacompose.modules.activations import Sine
from metacompose.modules.base import TypedModule
from metacompose.modules.batch_norm import TaskBatchNorm2d
from metacompose.modules.conv import ConvBlock
from metacompose.modules.linear import ClassificationHead, Identity, Linear, RegressionHead
from metacompose.modules.mlp import MLPBlock, ResidualMLPBlock
from metacompose.symbolic import (
    INPUT,
    Activation,
    Add,
    Affine,
    Concat,
    Network,
    NetworkPair,
    Node,
    ReLU,
)
from metacompose.symbolic.conv import avgpool_affine, conv2d_affine, dense_size, maxpool_nodes
from metacompose.symbolic.image_ops import Conv2d, MaxPool2d, avgpool_conv, pooled_shape
from metacompose.verify.reference import BatchStats, Params, batch_stats


class UnsupportedModuleError(ValueError):
    """A graph the symbolic IR cannot represent exactly; the message names the node and why."""


MAX_DENSE_ENTRIES = 30_000_000
"""Largest lowered network (Affine weight entries, both twins) certified; a ConvBlock whose dense
lowering would exceed it (a 28x28x32 conv net would take gigabytes) keeps structured conv nodes."""


class NetworkTooLargeError(UnsupportedModuleError):
    """The exact IR exists but is too large to certify on this machine."""


def input_numel(graph: ModuleGraph) -> int:
    """Width of the flattened input (``C * H * W`` for an image space)."""
    n = 1
    for d in graph.in_space.shape:
        n *= int(d)
    return n


def graph_to_network(
    graph: ModuleGraph, params: Params | None = None, *, stats_x: torch.Tensor | None = None
) -> Network:
    """The exact IR of ``graph`` with ``params`` (float64) on the flattened input.

    Args:
        graph: a validated module graph (a router's pool must be exported per task first).
        params: ``"<node>.<param>"`` -> tensor, without a task dimension; missing keys fall back
            to the graph's own parameters.
        stats_x: ``(B, ...)`` the batch whose statistics batch norm layers use (needed only when
            the graph has batch norm).

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
    stats: BatchStats = {}
    if any(isinstance(m, TaskBatchNorm2d) for m in graph.modules()):
        if stats_x is None:
            raise UnsupportedModuleError(
                "the graph has batch norm: converting it needs the batch it normalises (stats_x)"
            )
        stats = batch_stats(graph, full, stats_x)
    nodes: list[Node] = []
    outputs: dict[str, str] = {}  # graph node -> IR node holding its output
    for step in graph.plan:
        module = graph.node(step.node)
        converter = CONVERTERS.get(type(module))
        if converter is None:
            raise UnsupportedModuleError(
                f"node {step.node!r}: module {type(module).__name__} has no exact IR; supported: "
                f"{sorted(c.__name__ for c in CONVERTERS)}"
            )
        if module.out_space.kind != "vec" or (
            module.in_space.kind != "vec" and not isinstance(module, ConvBlock)
        ):
            raise UnsupportedModuleError(
                f"node {step.node!r} ({type(module).__name__}): spaces {module.in_space} -> "
                f"{module.out_space}; only vec spaces (and a ConvBlock's image input) convert"
            )
        if not step.inputs:
            h = INPUT
        elif step.merge is None:
            h = outputs[step.inputs[0]]
        else:
            h = f"{step.node}.merge"
            op = Add() if step.merge == "sum" else Concat()
            nodes.append(Node(h, op, tuple(outputs[i] for i in step.inputs)))
        outputs[step.node] = converter(step.node, module, full, h, nodes, stats)
    out = outputs[graph.sink]
    if out == INPUT:  # an identity graph: one explicit identity layer
        n = input_numel(graph)
        eye = torch.eye(n, dtype=torch.float64)
        nodes.append(Node("identity", Affine(eye, torch.zeros(n, dtype=torch.float64)), (INPUT,)))
        out = "identity"
    if 2 * dense_size(nodes) > MAX_DENSE_ENTRIES:
        raise NetworkTooLargeError(
            f"the exact IR has {dense_size(nodes):,} weight entries per network (limit "
            f"{MAX_DENSE_ENTRIES // 2:,}): too large to certify here"
        )
    return Network(input_dim=input_numel(graph), nodes=nodes, output=out)


def pair_from_params(
    graph: ModuleGraph, meta: Params, adapted: Params, *, stats_x: torch.Tensor | None = None
) -> NetworkPair:
    """The meta-learned network and its adapted twin (each a full or partial parameter dict);
    batch norm statistics (if any) come from ``stats_x`` through each twin's own weights."""
    return NetworkPair(
        meta=graph_to_network(graph, meta, stats_x=stats_x),
        adapted=graph_to_network(graph, adapted, stats_x=stats_x),
    )


def module_params(graph: ModuleGraph, meta: Params, adapted: Params) -> dict[str, tuple]:
    """Every parameter per graph node, ``node -> (meta tensors, adapted tensors)`` (trust regions)."""
    own = dict(graph.named_parameters())
    out: dict[str, tuple[list, list]] = {}
    for k, v in own.items():
        m, a = out.setdefault(k.split(".")[0], ([], []))
        m.append(meta.get(k, v).detach())
        a.append(adapted.get(k, v).detach())
    return out


# ------------------------------------------------------------------------------- converters
def _affine(prefix: str, layer: nn.Linear, full: Params) -> Affine:
    w = full[f"{prefix}.weight"]
    b = full.get(f"{prefix}.bias")
    if b is None:
        b = torch.zeros(layer.out_features, dtype=w.dtype)
    return Affine(w.detach(), b.detach())


def activation_op(node: str, layer: nn.Module) -> ReLU | Activation:
    """The IR op of an activation module, or :class:`UnsupportedModuleError` for a setting the IR
    does not mean (approximate GELU, Softplus with beta != 1)."""
    if isinstance(layer, nn.ReLU):
        return ReLU()
    if isinstance(layer, nn.GELU):
        if layer.approximate != "none":
            raise UnsupportedModuleError(
                f"node {node!r}: GELU(approximate={layer.approximate!r}) has no exact IR; "
                "only the exact GELU (approximate='none') converts"
            )
        return Activation("gelu")
    if isinstance(layer, nn.Softplus):
        if layer.beta != 1:
            raise UnsupportedModuleError(
                f"node {node!r}: Softplus(beta={layer.beta}) has no exact IR; only beta=1 converts"
            )
        return Activation("softplus")
    kinds = {nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SiLU: "silu", Sine: "sin"}
    kind = kinds.get(type(layer))
    if kind is None:
        raise UnsupportedModuleError(
            f"node {node!r}: activation {type(layer).__name__} has no exact IR; supported: ReLU, "
            "Tanh, Sigmoid, SiLU, Sine, GELU (exact), Softplus (beta 1)"
        )
    return Activation(kind)


def _linear(node, module, full, h, nodes, stats) -> str:
    name = f"{node}.linear"
    nodes.append(Node(name, _affine(name, module.linear, full), (h,)))
    return name


def _identity(node, module, full, h, nodes, stats) -> str:
    return h


def _mlp(node, module: MLPBlock, full, h, nodes, stats) -> str:
    for i, layer in enumerate(module.layers):
        name = f"{node}.layers.{i}"
        if isinstance(layer, nn.Linear):
            nodes.append(Node(name, _affine(name, layer, full), (h,)))
        elif isinstance(layer, nn.Identity):
            continue
        else:
            nodes.append(Node(name, activation_op(node, layer), (h,)))
        h = name
    return h


def _residual(node, module: ResidualMLPBlock, full, h, nodes, stats) -> str:
    x = h
    nodes.append(Node(f"{node}.inner", _affine(f"{node}.inner", module.inner, full), (x,)))
    nodes.append(Node(f"{node}.act", activation_op(node, module.act), (f"{node}.inner",)))
    nodes.append(
        Node(f"{node}.outer", _affine(f"{node}.outer", module.outer, full), (f"{node}.act",))
    )
    nodes.append(Node(f"{node}.sum", Add(), (x, f"{node}.outer")))
    if isinstance(module.out_act, nn.Identity):
        return f"{node}.sum"
    nodes.append(Node(f"{node}.out_act", activation_op(node, module.out_act), (f"{node}.sum",)))
    return f"{node}.out_act"


def _conv_block(node, module: ConvBlock, full, h, nodes, stats) -> str:
    """conv [+ batch norm folded in] -> activation -> pool, per stage; flatten is the layout.

    Lowered to dense Affine nodes (every tier, the exact z3 one included) while that stays
    small; beyond :data:`MAX_DENSE_ENTRIES` (e.g. 28x28 images) kept as structured Conv2d /
    MaxPool2d nodes (:mod:`metacompose.symbolic.image_ops`).
    """
    shape = tuple(int(d) for d in module.in_space.shape)
    structured = 2 * _dense_estimate(module, shape) > MAX_DENSE_ENTRIES
    pending: Affine | Conv2d | None = None  # the last conv, waiting for a batch norm to fold in
    pending_name = ""

    def flush() -> None:
        nonlocal h, pending
        if pending is not None:
            nodes.append(Node(pending_name, pending, (h,)))
            h, pending = pending_name, None

    for i, layer in enumerate(module.layers):
        name = f"{node}.layers.{i}"
        if isinstance(layer, nn.Conv2d):
            flush()
            if layer.dilation != (1, 1) or layer.groups != 1 or layer.padding_mode != "zeros":
                raise UnsupportedModuleError(
                    f"node {node!r}: layer {i} Conv2d with dilation/groups/padding mode has no IR"
                )
            if len(set(layer.stride)) != 1 or len(set(layer.padding)) != 1:
                raise UnsupportedModuleError(f"node {node!r}: layer {i}: non-square stride/padding")
            lower = _conv_node if structured else conv2d_affine
            pending, shape = lower(
                full[f"{name}.weight"],
                full.get(f"{name}.bias"),
                shape,
                stride=layer.stride[0],
                padding=layer.padding[0],
            )
            pending_name = name
        elif isinstance(layer, TaskBatchNorm2d):
            if pending is None:
                raise UnsupportedModuleError(f"node {node!r}: batch norm {i} not after a conv")
            pending = _fold_batch_norm(pending, name, layer, full, stats[name], shape)
            pending_name = f"{pending_name}+bn"
        elif isinstance(layer, nn.Identity):
            continue
        elif isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
            flush()
            k, s, pad = (
                _single(v, node, i) for v in (layer.kernel_size, layer.stride, layer.padding)
            )
            if pad != 0 or getattr(layer, "ceil_mode", False) or _dilated(layer):
                raise UnsupportedModuleError(f"node {node!r}: layer {i}: padded/ceil/dilated pool")
            if structured:
                op = (
                    MaxPool2d(shape, k, s)
                    if isinstance(layer, nn.MaxPool2d)
                    else avgpool_conv(shape, k, s)
                )
                nodes.append(Node(name, op, (h,)))
                h, shape = name, op.out_shape
            elif isinstance(layer, nn.MaxPool2d):
                new, h, shape = maxpool_nodes(name, h, shape, k, s)
                nodes.extend(new)
            else:
                aff, shape = avgpool_affine(shape, k, s)
                nodes.append(Node(name, aff, (h,)))
                h = name
        elif isinstance(layer, nn.GroupNorm):
            raise UnsupportedModuleError(
                f"node {node!r}: GroupNorm (layer {i}) normalises each image by its own statistics "
                "(not affine in the input); use norm: batch or none"
            )
        else:
            flush()
            nodes.append(Node(name, activation_op(node, layer), (h,)))
            h = name
    flush()
    return h


def _single(v, node: str, i: int) -> int:
    if isinstance(v, tuple):
        if len(set(v)) != 1:
            raise UnsupportedModuleError(f"node {node!r}: layer {i}: non-square pooling")
        v = v[0]
    return int(v)


def _dilated(layer: nn.Module) -> bool:
    d = getattr(layer, "dilation", 1)
    return (d if isinstance(d, int) else max(d)) != 1


def _conv_node(weight, bias, shape, *, stride: int, padding: int) -> tuple:
    w = weight.detach().to(torch.float64)
    b = torch.zeros(w.shape[0], dtype=torch.float64) if bias is None else bias.detach().double()
    op = Conv2d(w, b, shape, stride, padding)
    return op, op.out_shape


def _dense_estimate(module: ConvBlock, shape) -> int:
    """Weight entries of the dense lowering of ``module`` (conv and pool matrices)."""
    total = 0
    for layer in module.layers:
        n_in = shape[0] * shape[1] * shape[2]
        if isinstance(layer, nn.Conv2d):
            k, st, p = layer.kernel_size[0], layer.stride[0], layer.padding[0]
            shape = pooled_shape(shape, layer.out_channels, k, st, p)
        elif isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
            k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
            st = layer.stride if isinstance(layer.stride, int) else layer.stride[0]
            shape = pooled_shape(shape, shape[0], k, st or k, 0)
        else:
            continue
        total += n_in * shape[0] * shape[1] * shape[2]
    return total


def _fold_batch_norm(conv, name, layer: TaskBatchNorm2d, full, stat, shape):
    """``gamma (conv(x) - mean) / sqrt(var + eps) + beta`` as one Affine or Conv2d (statistics
    fixed)."""
    mean, var = (t.to(torch.float64) for t in stat)
    gamma = full[f"{name}.weight"].detach().to(torch.float64)
    beta = full[f"{name}.bias"].detach().to(torch.float64)
    scale = gamma * torch.rsqrt(var + layer.eps)
    if isinstance(conv, Conv2d):
        w = conv.weight * scale.view(-1, 1, 1, 1)
        return Conv2d(
            w, conv.bias * scale + beta - scale * mean, conv.in_shape, conv.stride, conv.padding
        )
    per = shape[1] * shape[2]
    s = scale.repeat_interleave(per)
    shift = (beta - scale * mean).repeat_interleave(per)
    return Affine(conv.weight * s.unsqueeze(1), conv.bias * s + shift)


Converter = Callable[[str, TypedModule, Params, str, list[Node], BatchStats], str]
CONVERTERS: dict[type, Converter] = {
    Linear: _linear,
    RegressionHead: _linear,
    ClassificationHead: _linear,
    Identity: _identity,
    MLPBlock: _mlp,
    ResidualMLPBlock: _residual,
    ConvBlock: _conv_block,
}
