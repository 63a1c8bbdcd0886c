import json

import networkx as nx
import pytest
import torch

from metacompose.graph import GraphError, ModuleGraph
from metacompose.models import conv_graph, mlp_graph, residual_mlp_graph
from metacompose.modules import Linear, MLPBlock, RegressionHead


def lin(i, o):
    return Linear(in_features=i, out_features=o)


def diamond(merge="sum"):
    nodes = {"a": lin(2, 4), "b": lin(4, 4), "c": lin(4, 4)}
    nodes["d"] = lin(4, 1) if merge == "sum" else lin(8, 1)
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    return ModuleGraph(nodes=nodes, edges=edges, merge={"d": merge})


@pytest.mark.parametrize("merge", ["sum", "concat"])
def test_merges_match_hand_written_forward(merge):
    g = diamond(merge).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    ha = g.node("a")(x)
    hb, hc = g.node("b")(ha), g.node("c")(ha)
    h = hb + hc if merge == "sum" else torch.cat([hb, hc], dim=-1)
    torch.testing.assert_close(g(x), g.node("d")(h), rtol=1e-12, atol=1e-12)


def test_plan_is_topological_and_networkx_free_at_call_time():
    g = diamond()
    order = g.node_names
    for u, v in g.graph.edges:
        assert order.index(u) < order.index(v)
    assert g.source == "a" and g.sink == "d"
    assert isinstance(g.graph, nx.DiGraph)
    assert g.graph.edges["a", "b"]["space"] == g.node("a").out_space


@pytest.mark.parametrize(
    "nodes, edges, merge, match",
    [
        ({"a": lin(2, 3), "b": lin(4, 1)}, [("a", "b")], {}, r"edge a -> b: type mismatch"),
        (
            {"a": lin(2, 2), "b": lin(2, 2), "c": lin(2, 2)},
            [("a", "b"), ("b", "c"), ("c", "b")],
            {"b": "sum"},
            r"cycle",
        ),
        ({"a": lin(2, 2), "b": lin(2, 2)}, [], {}, r"exactly one input node, found \['a', 'b'\]"),
        (
            {"a": lin(2, 2), "b": lin(2, 2), "c": lin(2, 2)},
            [("a", "b"), ("a", "c")],
            {},
            r"exactly one output node, found \['b', 'c'\]",
        ),
        (
            {"a": lin(2, 3), "b": lin(3, 3), "c": lin(3, 3), "d": lin(3, 1)},
            [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")],
            {},
            r"node 'd' has inputs \['b', 'c'\] and needs a merge op",
        ),
        (
            {"a": lin(2, 3), "b": lin(3, 3), "c": lin(3, 3), "d": lin(5, 1)},
            [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")],
            {"d": "concat"},
            r"node 'd': concat .* gives vec\[6\], but the node takes vec\[5\]",
        ),
        ({"a.b": lin(2, 2)}, [], {}, r"identifier"),
        ({"a": lin(2, 2)}, [("a", "z")], {}, r"unknown node 'z'"),
        ({"a": lin(2, 2), "b": lin(2, 2)}, [("a", "b")], {"b": "sum"}, r"declares merge"),
    ],
)
def test_invalid_graphs_fail_naming_the_culprit(nodes, edges, merge, match):
    with pytest.raises(GraphError, match=match):
        ModuleGraph(nodes=nodes, edges=edges, merge=merge)


@pytest.mark.parametrize(
    "build",
    [
        lambda: mlp_graph(in_features=1, hidden=[40, 40], out_features=1),
        lambda: residual_mlp_graph(blocks=2),
        lambda: conv_graph(filters=4, n_way=5),
        lambda: diamond("concat"),
    ],
)
def test_json_round_trip_preserves_structure_and_function(build):
    g = build()
    text = g.to_json()
    g2 = ModuleGraph.from_json(text)
    assert json.loads(g2.to_json()) == json.loads(text)
    g2.load_state_dict(g.state_dict())
    x = torch.randn((3, *g.in_space.shape))
    torch.testing.assert_close(g2(x), g(x), rtol=0, atol=0)


def test_param_keys_scope_by_node_and_reject_unknown_nodes():
    g = mlp_graph()
    assert g.param_keys(["head"]) == ["head.linear.weight", "head.linear.bias"]
    with pytest.raises(KeyError, match="no node 'tail'"):
        g.param_keys(["tail"])


def test_sinusoid_network_is_1_40_40_1():
    g = mlp_graph(in_features=1, hidden=[40, 40], out_features=1)
    shapes = [tuple(p.shape) for p in g.parameters()]
    assert shapes == [(40, 1), (40,), (40, 40), (40,), (1, 40), (1,)]
    assert isinstance(g.node("body"), MLPBlock) and isinstance(g.node("head"), RegressionHead)
