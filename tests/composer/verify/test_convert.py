"""The IR conversion equals the torch ModuleGraph (float64, tight tolerance); unsupported graphs fail
with one clear error naming the node."""

import pytest
import torch

from metacompose.graph import ModuleGraph
from metacompose.models import conv_graph, mlp_graph, residual_mlp_graph
from metacompose.modules.linear import ClassificationHead, Linear, RegressionHead
from metacompose.modules.mlp import MLPBlock, ResidualMLPBlock
from metacompose.router.pool import ModulePool
from metacompose.verify import (
    UnsupportedModuleError,
    graph_forward,
    graph_to_network,
    module_params,
)


def _merge_graph() -> ModuleGraph:
    """stem -> (a: residual, b: mlp) -> sum; stem -> c (linear, no bias); concat(sum, c) -> head."""
    nodes = {
        "stem": MLPBlock(in_features=3, hidden=[7], out_features=6),
        "a": ResidualMLPBlock(features=6, hidden=5, activate_output=True),
        "b": MLPBlock(in_features=6, hidden=[], out_features=6, activate_output=False),
        "s": ResidualMLPBlock(features=6, hidden=4),
        "c": Linear(in_features=6, out_features=2, bias=False),
        "head": ClassificationHead(in_features=8, n_classes=4),
    }
    edges = [
        ("stem", "a"),
        ("stem", "b"),
        ("a", "s"),
        ("b", "s"),
        ("stem", "c"),
        ("s", "head"),
        ("c", "head"),
    ]
    return ModuleGraph(nodes=nodes, edges=edges, merge={"s": "sum", "head": "concat"})


def _random_params(graph, gen):
    return {
        k: torch.randn(v.shape, generator=gen, dtype=torch.float64)
        for k, v in graph.named_parameters()
    }


@pytest.mark.parametrize(
    "make",
    [
        lambda: mlp_graph(in_features=1, hidden=[40, 40], out_features=1),
        lambda: mlp_graph(in_features=2, hidden=[5], out_features=3),
        lambda: residual_mlp_graph(in_features=2, width=6, blocks=2, block_hidden=5),
        _merge_graph,
        lambda: ModuleGraph(nodes={"h": RegressionHead(in_features=4, out_features=2)}, edges=[]),
    ],
)
def test_conversion_equals_the_torch_graph(make):
    torch.manual_seed(0)
    graph = make()
    gen = torch.Generator().manual_seed(1)
    params = _random_params(graph, gen)
    x = 3 * torch.randn(256, graph.in_space.dim, generator=gen, dtype=torch.float64)
    net = graph_to_network(graph, params)
    torch.testing.assert_close(net(x), graph_forward(graph, params, x), atol=1e-12, rtol=1e-12)
    # Without params the graph's own (float32) weights are used, exactly as in float64.
    own = {k: v.detach().double() for k, v in graph.named_parameters()}
    torch.testing.assert_close(
        graph_to_network(graph)(x), graph_forward(graph, own, x), atol=1e-12, rtol=1e-12
    )


def test_module_params_group_by_node():
    graph = _merge_graph()
    meta = _random_params(graph, torch.Generator().manual_seed(2))
    adapted = {k: v + 1 for k, v in meta.items()}
    groups = module_params(graph, meta, adapted)
    assert sorted(groups) == sorted(graph.node_names)
    m, a = groups["a"]
    assert len(m) == len(a) == 4
    for x, y in zip(m, a):
        torch.testing.assert_close(y - x, torch.ones_like(x), atol=1e-12, rtol=0)


def test_unsupported_modules_are_named():
    with pytest.raises(UnsupportedModuleError, match=r"batch norm.*stats_x"):
        graph_to_network(conv_graph(image_size=8, filters=4, depth=1, norm="batch"))
    with pytest.raises(UnsupportedModuleError, match=r"node 'body'.*GroupNorm"):
        graph_to_network(conv_graph(image_size=8, filters=4, depth=1, norm="group"))
    graph = mlp_graph(hidden=[4, 4], activation="gelu")
    graph.node("body").layers[1].approximate = "tanh"
    with pytest.raises(UnsupportedModuleError, match=r"node 'body'.*GELU\(approximate='tanh'\)"):
        graph_to_network(graph)
    pool = ModulePool(
        slots={"a": [MLPBlock(in_features=1, hidden=[], out_features=2)] * 2}, edges=[]
    )
    with pytest.raises(UnsupportedModuleError, match="export"):
        graph_to_network(pool)
