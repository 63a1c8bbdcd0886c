from pathlib import Path

import networkx as nx
import pytest

from metacompose.symbolic.rules import RulesError, load_rules, rules_from_dict, validate_graph

RULES = Path(__file__).resolve().parents[2] / "configs" / "rules"


def _graph(edges, **overrides):
    g = nx.DiGraph()
    base = {
        "a": dict(slot="enc", module="mlp", in_space="vec[1]", out_space="vec[40]", params=80),
        "b": dict(
            slot="body", module="resmlp", in_space="vec[40]", out_space="vec[40]", params=3000
        ),
        "c": dict(slot="head", module="linear", in_space="vec[40]", out_space="vec[1]", params=41),
    }
    for k, v in base.items():
        g.add_node(k, **{**v, **overrides.get(k, {})})
    g.add_edges_from(edges)
    return g


def test_valid_graph_passes_and_every_rules_file_loads():
    for f in RULES.glob("*.yaml"):
        load_rules(f)
    rules = rules_from_dict(
        {
            "max_depth": 3,
            "param_budget": 5000,
            "slots": {"body": {"required": ["resmlp"], "forbidden": ["conv"]}},
        }
    )
    check = validate_graph(_graph([("a", "b"), ("b", "c")]), rules)
    assert check.ok and check.message() == "ok"


def test_each_violated_rule_is_named_with_its_core():
    rules = rules_from_dict(
        {
            "max_depth": 2,
            "param_budget": 1000,
            "mutually_exclusive": [["mlp", "linear"]],
            "slots": {"body": {"required": ["mlp"], "forbidden": ["resmlp"]}},
        }
    )
    g = _graph([("a", "b"), ("b", "c"), ("c", "a")], b={"in_space": "vec[30]"})
    check = validate_graph(g, rules)
    names = {v.rule: v.culprits for v in check.violations}
    assert set(names) == {
        "interface_compatibility[a->b]",
        "acyclic",
        "max_depth<=2",
        "param_budget<=1000",
        "mutually_exclusive[0]=['mlp', 'linear']",
        "slots.body.required=mlp",
        "slots.body.forbidden=resmlp",
    }
    assert set(names["acyclic"]) == {"edge a->b", "edge b->c", "edge c->a"}
    assert set(names["interface_compatibility[a->b]"]) == {
        "node a out_space=vec[40]",
        "node b in_space=vec[30]",
    }
    assert "acyclic" in check.message() and "\n" not in check.message()


def test_depth_reference_against_networkx():
    for n in range(1, 7):
        g = nx.path_graph(n, create_using=nx.DiGraph)
        for v in g.nodes:
            g.nodes[v].update(slot=str(v), module="m", in_space="s", out_space="s", params=1)
        for d in range(1, 7):
            ok = validate_graph(g, rules_from_dict({"max_depth": d})).ok
            assert ok == (nx.dag_longest_path_length(g) + 1 <= d)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"max_dept": 3}, "max_dept"),
        ({"acyclic": "yes"}, "acyclic"),
        ({"slots": {"s": {"needs": []}}}, "slots.s.needs"),
        ({"param_budget": -1}, "param_budget"),
    ],
)
def test_bad_rules_name_the_key(data, key):
    with pytest.raises(RulesError, match=f"key '{key}'"):
        rules_from_dict(data, source="r.yaml")


def test_a_long_key_is_shortened(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("x" * 500 + ": 1\n")
    with pytest.raises(RulesError) as err:
        load_rules(path)
    assert len(str(err.value)) < 300 and "...'" in str(err.value)
