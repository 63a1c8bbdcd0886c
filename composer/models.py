"""Builders: small functions that turn config values into the library's standard graphs."""

from __future__ import annotations

from metacompose.graph import ModuleGraph
from metacompose.modules.conv import ConvBlock
from metacompose.modules.linear import ClassificationHead, RegressionHead
from metacompose.modules.mlp import MLPBlock, ResidualMLPBlock
from metacompose.modules.sizes import MAX_SIZE, check_sizes


def mlp_graph(
    *,
    in_features: int = 1,
    hidden: list[int] | tuple[int, ...] = (40, 40),
    out_features: int = 1,
    activation: str = "relu",
) -> ModuleGraph:
    """``body -> head``: an MLP ``in-hidden...-out`` split so that ANIL can adapt ``head`` alone.

    ``mlp_graph(in_features=1, hidden=[40, 40], out_features=1)`` is the MAML sinusoid network.
    """
    hidden = list(hidden)
    if not hidden:
        raise ValueError("mlp_graph needs at least one hidden layer")
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden={hidden}: widths must be >= 1")
    if any(h > MAX_SIZE for h in hidden):
        raise ValueError(f"hidden={hidden}: widths must be <= {MAX_SIZE}")
    check_sizes(in_features=in_features, out_features=out_features)
    body = MLPBlock(
        in_features=in_features, hidden=hidden[:-1], out_features=hidden[-1], activation=activation
    )
    head = RegressionHead(in_features=hidden[-1], out_features=out_features)
    return ModuleGraph(nodes={"body": body, "head": head}, edges=[("body", "head")])


def residual_mlp_graph(
    *,
    in_features: int = 1,
    width: int = 40,
    blocks: int = 2,
    block_hidden: int = 40,
    out_features: int = 1,
    activation: str = "relu",
) -> ModuleGraph:
    """``stem -> res_0 -> ... -> res_{blocks-1} -> head`` with residual MLP blocks (``blocks=0``:
    the stem feeds the head)."""
    if blocks < 0:
        raise ValueError(f"blocks must be >= 0, got {blocks}")
    check_sizes(
        in_features=in_features, width=width, block_hidden=block_hidden, out_features=out_features
    )
    nodes = {
        "stem": MLPBlock(
            in_features=in_features, hidden=[], out_features=width, activation=activation
        )
    }
    edges, prev = [], "stem"
    for i in range(blocks):
        name = f"res_{i}"
        nodes[name] = ResidualMLPBlock(features=width, hidden=block_hidden, activation=activation)
        edges.append((prev, name))
        prev = name
    nodes["head"] = RegressionHead(in_features=width, out_features=out_features)
    edges.append((prev, "head"))
    return ModuleGraph(nodes=nodes, edges=edges)


def conv_graph(
    *,
    in_channels: int = 1,
    image_size: int = 28,
    n_way: int = 5,
    filters: int = 64,
    depth: int = 4,
    norm: str = "batch",
    zero_init_head: bool = False,
) -> ModuleGraph:
    """``body -> head``: the MAML paper's 4-layer conv network with an N-way classification head."""
    check_sizes(n_way=n_way)  # the body's own sizes: ConvBlock checks them
    body = ConvBlock(
        in_channels=in_channels, image_size=image_size, filters=filters, depth=depth, norm=norm
    )
    head = ClassificationHead(
        in_features=body.out_space.dim, n_classes=n_way, zero_init=zero_init_head
    )
    return ModuleGraph(nodes={"body": body, "head": head}, edges=[("body", "head")])


MODEL_BUILDERS = {
    "mlp": mlp_graph,
    "residual_mlp": residual_mlp_graph,
    "conv": conv_graph,
}
