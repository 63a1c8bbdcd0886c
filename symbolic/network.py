"""A minimal network IR: a DAG of Affine / ReLU / Activation / Add / Concat ops, float64, plus
the structured image ops Conv2d and MaxPool2d (:mod:`~metacompose.symbolic.image_ops`).

The symbolic layer never sees ``composer`` graphs or ``nn.Module`` objects: a caller converts
its weights into this IR (``Network.from_layers`` for a plain stack, or explicit ``Node`` lists
for residual / multi-branch graphs) and hands over a :class:`NetworkPair` (meta-learned weights
and adapted weights, same structure).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from metacompose.symbolic import activations
from metacompose.symbolic.image_ops import IMAGE_OPS, Conv2d, MaxPool2d, numel

INPUT = "input"
"""Name of the network's single input; nodes refer to it in their ``inputs``."""


@dataclass(frozen=True, eq=False)
class Affine:
    """``y = x @ weight.T + bias``; a convolution can be handed over as its dense matrix.

    Args:
        weight: shape ``(out, in)``.
        bias: shape ``(out,)``.
    """

    weight: torch.Tensor
    bias: torch.Tensor

    def __post_init__(self) -> None:
        w = torch.as_tensor(self.weight).detach().to(torch.float64)
        b = torch.as_tensor(self.bias).detach().to(torch.float64)
        if w.dim() != 2 or b.shape != (w.shape[0],):
            raise ValueError(
                f"Affine needs weight (out, in) and bias (out,), got {tuple(w.shape)} and "
                f"{tuple(b.shape)}"
            )
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)


@dataclass(frozen=True)
class ReLU:
    """Elementwise ``max(x, 0)``."""


@dataclass(frozen=True)
class Activation:
    """Elementwise smooth activation ``kind``: one of ``tanh``, ``sigmoid``, ``softplus``,
    ``sin``, ``cos``, ``gelu``, ``silu`` (see :mod:`~metacompose.symbolic.activations`).

    The IR means the mathematical function: ``gelu`` is the exact ``x Phi(x)`` (torch's
    ``approximate="none"``), ``softplus`` is ``log(1 + e^x)`` (``nn.Softplus`` with its default
    ``threshold=20`` differs by at most ``e^-20`` above 20). ReLU is its own op, :class:`ReLU`.
    """

    kind: str

    def __post_init__(self) -> None:
        activations.get(self.kind)


@dataclass(frozen=True)
class Add:
    """Sum of all inputs (same width); residual skips are an ``Add`` of a branch and its input."""


@dataclass(frozen=True)
class Concat:
    """Concatenation of the inputs along the feature dimension, in the order given."""


Op = Affine | ReLU | Activation | Add | Concat | Conv2d | MaxPool2d
SUPPORTED_OPS = (Affine, ReLU, Activation, Add, Concat, Conv2d, MaxPool2d)


@dataclass(frozen=True)
class Node:
    """One op applied to named inputs (``INPUT`` or earlier node names)."""

    name: str
    op: Op
    inputs: tuple[str, ...]


class Network:
    """A DAG of piecewise-linear ops with one input of width ``input_dim`` and one output node.

    Args:
        input_dim: width ``n`` of the input.
        nodes: the ops, in any order; each names its inputs.
        output: name of the output node (default: the last node given).

    Raises:
        TypeError: an op is not one of Affine, ReLU, Activation, Add, Concat, Conv2d, MaxPool2d.
        ValueError: unknown input names, a cycle, or mismatched widths.
    """

    def __init__(self, *, input_dim: int, nodes: Sequence[Node], output: str | None = None) -> None:
        if not nodes:
            raise ValueError("a Network needs at least one node")
        self.input_dim = int(input_dim)
        self.nodes = {nd.name: nd for nd in nodes}
        if len(self.nodes) != len(nodes) or INPUT in self.nodes:
            raise ValueError(f"node names must be unique and differ from {INPUT!r}")
        for nd in nodes:
            if not isinstance(nd.op, SUPPORTED_OPS):
                raise TypeError(
                    f"node {nd.name!r}: unsupported op {type(nd.op).__name__}; the symbolic IR "
                    "supports Affine, ReLU, Activation, Add, Concat, Conv2d, MaxPool2d"
                )
        self.output = output if output is not None else nodes[-1].name
        if self.output not in self.nodes:
            raise ValueError(f"output node {self.output!r} is not a node")
        self.order = _topological_order(self.nodes)
        self.widths = self._infer_widths()

    @property
    def output_dim(self) -> int:
        return self.widths[self.output]

    @property
    def piecewise_linear(self) -> bool:
        """True when every op is Affine, ReLU, Add or Concat (no smooth activation)."""
        return not any(isinstance(nd.op, Activation) for nd in self.nodes.values())

    @property
    def has_image_ops(self) -> bool:
        """True when a Conv2d or MaxPool2d node is kept structured (not lowered to Affine)."""
        return any(isinstance(nd.op, IMAGE_OPS) for nd in self.nodes.values())

    def is_finite(self) -> bool:
        """Whether every Affine / Conv2d weight and bias is finite."""
        return all(
            bool(torch.isfinite(nd.op.weight).all() and torch.isfinite(nd.op.bias).all())
            for nd in self.nodes.values()
            if isinstance(nd.op, Affine | Conv2d)
        )

    def affine_nodes(self) -> list[Node]:
        """The Affine nodes in topological order."""
        return [self.nodes[k] for k in self.order if isinstance(self.nodes[k].op, Affine)]

    def _infer_widths(self) -> dict[str, int]:
        widths = {INPUT: self.input_dim}
        for name in self.order:
            nd = self.nodes[name]
            ins = [widths[i] for i in nd.inputs]
            op = nd.op
            if isinstance(op, Affine):
                if len(ins) != 1 or op.weight.shape[1] != ins[0]:
                    raise ValueError(
                        f"node {name!r}: Affine takes one input of width {op.weight.shape[1]}, "
                        f"got widths {ins}"
                    )
                widths[name] = op.weight.shape[0]
            elif isinstance(op, ReLU | Activation):
                if len(ins) != 1:
                    raise ValueError(
                        f"node {name!r}: {type(op).__name__} takes one input, got {len(ins)}"
                    )
                widths[name] = ins[0]
            elif isinstance(op, Conv2d | MaxPool2d):
                if len(ins) != 1 or numel(op.in_shape) != ins[0]:
                    raise ValueError(
                        f"node {name!r}: {type(op).__name__} on image {op.in_shape} takes one "
                        f"input of width {numel(op.in_shape)}, got widths {ins}"
                    )
                widths[name] = numel(op.out_shape)
            elif isinstance(op, Add):
                if not ins or len(set(ins)) != 1:
                    raise ValueError(f"node {name!r}: Add needs inputs of equal width, got {ins}")
                widths[name] = ins[0]
            else:
                if not ins:
                    raise ValueError(f"node {name!r}: Concat needs inputs")
                widths[name] = sum(ins)
        return widths

    def forward_all(
        self, x: torch.Tensor, params: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor]:
        """Values of every node for a batch ``x`` of shape ``(B, n)``; each ``(B, width)``.

        ``params`` optionally overrides Affine weights by node name (differentiably, for
        ``torch.func``).
        """
        params = params or {}
        vals = {INPUT: x.to(torch.float64)}
        for name in self.order:
            nd = self.nodes[name]
            ins = [vals[i] for i in nd.inputs]
            op = nd.op
            if isinstance(op, Affine):
                w, b = params.get(name, (op.weight, op.bias))
                vals[name] = ins[0] @ w.T + b
            elif isinstance(op, ReLU):
                vals[name] = torch.relu(ins[0])
            elif isinstance(op, Activation):
                vals[name] = activations.get(op.kind).f(ins[0])
            elif isinstance(op, Conv2d):
                vals[name] = op.apply(ins[0]) + op.bias_flat()
            elif isinstance(op, MaxPool2d):
                vals[name] = op.apply(ins[0])
            elif isinstance(op, Add):
                vals[name] = torch.stack(ins).sum(0)
            else:
                vals[name] = torch.cat(ins, dim=-1)
        return vals

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs for a batch ``x`` of shape ``(B, n)``: shape ``(B, m)``, float64."""
        return self.forward_all(x)[self.output]

    __call__ = forward

    @classmethod
    def from_layers(
        cls, layers: Sequence[tuple[torch.Tensor, torch.Tensor, str | None]], *, prefix: str = ""
    ) -> Network:
        """A plain stack: each layer is ``(weight (out, in), bias (out,), activation)``.

        ``activation`` is ``"relu"``, a smooth kind of :data:`activations.KINDS` (``"tanh"``,
        ``"sin"``, ...) or ``None``/``"linear"``. Affine nodes are named ``f"{prefix}{i}"``, their
        activations ``f"{prefix}{i}.{activation}"``.
        """
        nodes: list[Node] = []
        prev = INPUT
        for i, (w, b, act) in enumerate(layers):
            nodes.append(Node(f"{prefix}{i}", Affine(w, b), (prev,)))
            prev = f"{prefix}{i}"
            if act == "relu":
                nodes.append(Node(f"{prev}.relu", ReLU(), (prev,)))
                prev = f"{prev}.relu"
            elif act in activations.KINDS:
                nodes.append(Node(f"{prev}.{act}", Activation(act), (prev,)))
                prev = f"{prev}.{act}"
            elif act not in (None, "linear"):
                raise ValueError(
                    f"layer {i}: unsupported activation {act!r} (use 'relu', one of "
                    f"{sorted(activations.KINDS)}, or None)"
                )
        return cls(input_dim=nodes[0].op.weight.shape[1], nodes=nodes)

    @classmethod
    def from_sequential(cls, seq: nn.Sequential, *, prefix: str = "") -> Network:
        """Convert an ``nn.Sequential`` of ``nn.Linear``, ``nn.Identity`` and activations after a
        Linear (``ReLU``, ``Tanh``, ``Sigmoid``, ``SiLU``, ``GELU()`` exact, ``Softplus()`` with
        default arguments)."""
        layers: list[list] = []
        for i, mod in enumerate(seq):
            if isinstance(mod, nn.Linear):
                bias = mod.bias if mod.bias is not None else torch.zeros(mod.out_features)
                layers.append([mod.weight, bias, None])
            elif _module_kind(mod) is not None and layers and layers[-1][2] is None:
                layers[-1][2] = _module_kind(mod)
            elif not isinstance(mod, nn.Identity):
                raise TypeError(
                    f"layer {i}: unsupported module {type(mod).__name__} (supported: Linear, "
                    "Identity, ReLU/Tanh/Sigmoid/SiLU/GELU/Softplus after a Linear)"
                )
        return cls.from_layers([tuple(x) for x in layers], prefix=prefix)

    def with_affine(self, params: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Network:
        """The same structure with Affine weights replaced (by node name -> (weight, bias))."""
        unknown = set(params) - {nd.name for nd in self.affine_nodes()}
        if unknown:
            raise ValueError(f"with_affine: {sorted(unknown)} are not Affine nodes")
        nodes = [
            Node(nd.name, Affine(*params[nd.name]), nd.inputs) if nd.name in params else nd
            for nd in self.nodes.values()
        ]
        return Network(input_dim=self.input_dim, nodes=nodes, output=self.output)

    def structure(self) -> list[tuple[str, str, tuple[str, ...], int]]:
        """(name, op type, inputs, width) per node in topological order: equal for twins."""
        return [
            (k, _op_name(self.nodes[k].op), self.nodes[k].inputs, self.widths[k])
            for k in self.order
        ]


def _op_name(op: Op) -> str:
    return f"Activation({op.kind})" if isinstance(op, Activation) else type(op).__name__


def _module_kind(mod: nn.Module) -> str | None:
    if isinstance(mod, nn.GELU):
        return "gelu" if mod.approximate == "none" else None
    if isinstance(mod, nn.Softplus):
        return "softplus" if mod.beta == 1 else None
    kinds = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SiLU: "silu"}
    return kinds.get(type(mod))


def _topological_order(nodes: dict[str, Node]) -> list[str]:
    indeg = {k: 0 for k in nodes}
    users: dict[str, list[str]] = {k: [] for k in nodes}
    for nd in nodes.values():
        for i in nd.inputs:
            if i != INPUT and i not in nodes:
                raise ValueError(f"node {nd.name!r}: unknown input {i!r}")
            if i != INPUT:
                indeg[nd.name] += 1
                users[i].append(nd.name)
    ready = [k for k in nodes if indeg[k] == 0]
    order = []
    while ready:
        k = ready.pop(0)
        order.append(k)
        for u in users[k]:
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    if len(order) != len(nodes):
        cyc = sorted(k for k in nodes if indeg[k] > 0)
        raise ValueError(f"the network has a cycle through nodes {cyc}")
    return order


class NetworkPair:
    """The meta-learned network and its adapted twin: same structure, different weights.

    Args:
        meta: the network before adaptation.
        adapted: the network after adaptation.
    """

    def __init__(self, *, meta: Network, adapted: Network) -> None:
        if meta.structure() != adapted.structure() or meta.output != adapted.output:
            raise ValueError("NetworkPair: meta and adapted networks differ in structure")
        self.meta = meta
        self.adapted = adapted

    @property
    def input_dim(self) -> int:
        return self.meta.input_dim

    @property
    def output_dim(self) -> int:
        return self.meta.output_dim

    def deviation(self, x: torch.Tensor) -> torch.Tensor:
        """``f_adapted(x) - f_meta(x)`` for ``x`` of shape ``(B, n)``: shape ``(B, m)``."""
        return self.adapted(x) - self.meta(x)

    def module_params(self, sep: str = ".") -> dict[str, tuple[list[torch.Tensor], list]]:
        """Affine weights grouped by node-name prefix (text before the first ``sep``).

        Returns:
            module name -> (meta tensors, adapted tensors), the form trust regions take.
        """
        out: dict[str, tuple[list, list]] = {}
        for nd_m in self.meta.affine_nodes():
            nd_a = self.adapted.nodes[nd_m.name]
            key = nd_m.name.split(sep)[0]
            m, a = out.setdefault(key, ([], []))
            m += [nd_m.op.weight, nd_m.op.bias]
            a += [nd_a.op.weight, nd_a.op.bias]
        return out
