"""Module pool: template validation errors, JSON round trip, and hard-routed export."""

import pytest
import torch

from metacompose.graph import GraphError, ModuleGraph
from metacompose.router import ModulePool, build_pool, modulation_targets, route_key

TEMPLATE = {
    "nodes": {
        "inner": {
            "type": "MLPBlock",
            "candidates": 3,
            "args": {"in_features": 1, "hidden": [6], "out_features": 4},
        },
        "outer": {
            "candidates": [
                {
                    "type": "MLPBlock",
                    "args": {
                        "in_features": 4,
                        "hidden": [5],
                        "out_features": 2,
                        "activate_output": False,
                    },
                },
                {"type": "Linear", "args": {"in_features": 4, "out_features": 2}},
            ]
        },
    },
    "edges": [["inner", "outer"]],
}


def test_interface_mismatch_names_slot_and_candidate():
    bad = {
        "nodes": {
            "inner": TEMPLATE["nodes"]["inner"],
            "outer": {
                "candidates": [
                    {"type": "Linear", "args": {"in_features": 4, "out_features": 2}},
                    {"type": "Linear", "args": {"in_features": 4, "out_features": 3}},
                ]
            },
        },
        "edges": [["inner", "outer"]],
    }
    with pytest.raises(
        GraphError, match=r"slot 'outer': candidate 1 \(Linear\) has interface vec\[4\] -> vec\[3\]"
    ):
        build_pool(bad)


def test_edge_type_mismatch_between_slots():
    bad = {
        "nodes": {
            "inner": TEMPLATE["nodes"]["inner"],
            "outer": {"type": "Linear", "args": {"in_features": 5, "out_features": 1}},
        },
        "edges": [["inner", "outer"]],
    }
    with pytest.raises(GraphError, match=r"router.template: edge inner -> outer: type mismatch"):
        build_pool(bad)


def test_bad_module_args_name_the_key():
    bad = {"nodes": {"a": {"type": "Linear", "args": {"in_features": 1, "width": 3}}}, "edges": []}
    with pytest.raises(ValueError, match=r"router.template.nodes.a.candidates\[0\]: bad arguments"):
        build_pool(bad)


def test_pool_json_round_trip():
    pool = build_pool(TEMPLATE)
    again = ModulePool.from_json_dict(pool.to_json_dict())
    assert again.to_json_dict() == pool.to_json_dict()
    assert pool.num_candidates == {"inner": 3, "outer": 2}


def test_export_equals_one_hot_pool_with_modulations():
    pool = build_pool(TEMPLATE).double()
    targets = modulation_targets({s: list(pool._modules[s]) for s in pool.slot_names}, low_rank=2)
    g = torch.Generator().manual_seed(1)
    params = dict(pool.named_parameters())
    for t in targets:
        for kind, shape in t.shapes().items():
            params[t.key(kind)] = 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
    params[route_key("inner")] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    params[route_key("outer")] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    x = torch.randn(7, 1, generator=g, dtype=torch.float64)
    graph, weights = pool.export_graph({"inner": 2, "outer": 1}, params)
    torch.testing.assert_close(
        graph.apply_params(weights, x), pool.apply_params(params, x), rtol=1e-12, atol=1e-12
    )

    # Independent reference: candidate 2 of inner, then the Linear of outer, modulations by hand.
    def film(w, b, key):
        w = w + params[key + "u"] @ params[key + "v"].T
        s = 1 + params[key + "gamma"]
        return s[:, None] * w, s * b + params[key + "beta"]

    w0, b0 = film(
        params["inner.2.layers.0.weight"], params["inner.2.layers.0.bias"], "mod.inner.*.layers.0."
    )
    w1, b1 = film(
        params["inner.2.layers.2.weight"], params["inner.2.layers.2.bias"], "mod.inner.*.layers.2."
    )
    w2, b2 = film(
        params["outer.1.linear.weight"], params["outer.1.linear.bias"], "mod.outer.1.linear."
    )
    h = torch.relu(torch.relu(x @ w0.T + b0) @ w1.T + b1)
    torch.testing.assert_close(
        graph.apply_params(weights, x), h @ w2.T + b2, rtol=1e-12, atol=1e-12
    )
    text = graph.to_json()
    assert ModuleGraph.from_json(text).to_json_dict() == graph.to_json_dict()


def test_shared_modulation_only_when_candidate_shapes_agree():
    pool = build_pool(TEMPLATE)
    targets = pool.modulation_targets(low_rank=0)
    assert {(t.slot, t.candidate) for t in targets} == {("inner", None), ("outer", 0), ("outer", 1)}


def test_identity_candidate_keeps_the_slot_modulation_shared_and_passes_input_through():
    template = {
        "nodes": {
            "inner": {"type": "MLPBlock", "candidates": 2,
                      "args": {"in_features": 1, "hidden": [5], "out_features": 1}},
            "outer": {"candidates": [
                {"type": "MLPBlock", "args": {"in_features": 1, "hidden": [5], "out_features": 1}},
                {"type": "MLPBlock", "args": {"in_features": 1, "hidden": [5], "out_features": 1}},
                {"type": "Identity", "args": {"features": 1}},
            ]},
        },
        "edges": [["inner", "outer"]],
    }  # fmt: skip
    pool = build_pool(template).double()
    targets = pool.modulation_targets(low_rank=0)
    assert {(t.slot, t.candidate) for t in targets} == {("inner", None), ("outer", None)}
    g = torch.Generator().manual_seed(3)
    params = dict(pool.named_parameters())
    for t in targets:
        for kind, shape in t.shapes().items():
            params[t.key(kind)] = 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
    params[route_key("inner")] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    params[route_key("outer")] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    x = torch.randn(6, 1, generator=g, dtype=torch.float64)
    # reference: the modulated inner candidate 1 by hand, then nothing
    key = "mod.inner.*.layers."
    w0 = (1 + params[key + "0.gamma"])[:, None] * params["inner.1.layers.0.weight"]
    b0 = (1 + params[key + "0.gamma"]) * params["inner.1.layers.0.bias"] + params[key + "0.beta"]
    w1 = (1 + params[key + "2.gamma"])[:, None] * params["inner.1.layers.2.weight"]
    b1 = (1 + params[key + "2.gamma"]) * params["inner.1.layers.2.bias"] + params[key + "2.beta"]
    u = torch.relu(torch.relu(x @ w0.T + b0) @ w1.T + b1)
    torch.testing.assert_close(pool.apply_params(params, x), u, rtol=1e-12, atol=1e-12)
    graph, weights = pool.export_graph({"inner": 1, "outer": 2}, params)
    torch.testing.assert_close(graph.apply_params(weights, x), u, rtol=1e-12, atol=1e-12)


def test_unmodulated_slot_has_no_targets_and_round_trips():
    template = {
        "nodes": {
            "inner": {**TEMPLATE["nodes"]["inner"], "modulate": False},
            "outer": TEMPLATE["nodes"]["outer"],
        },
        "edges": TEMPLATE["edges"],
    }
    pool = build_pool(template)
    assert pool.unmodulated == ("inner",)
    slots = {t.slot for t in pool.modulation_targets(low_rank=1)}
    assert slots == {"outer"}
    back = ModulePool.from_json_dict(pool.to_json_dict())
    assert back.unmodulated == ("inner",)
    assert [t.key("gamma") for t in back.modulation_targets(low_rank=0)] == [
        t.key("gamma") for t in pool.modulation_targets(low_rank=0)
    ]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"modulate": "no"}, r"router\.template\.nodes\.inner\.modulate: must be true or false"),
        ({"modulated": False}, r"router\.template\.nodes\.inner: unknown key\(s\) \['modulated'\]"),
    ],
)
def test_bad_node_keys_name_the_key(spec, match):
    template = {
        "nodes": {
            "inner": {**TEMPLATE["nodes"]["inner"], **spec},
            "outer": TEMPLATE["nodes"]["outer"],
        },
        "edges": TEMPLATE["edges"],
    }
    with pytest.raises(ValueError, match=match):
        build_pool(template)
