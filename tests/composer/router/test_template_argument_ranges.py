"""``router.template`` values out of range are refused with a ``ValueError`` naming the key path and
the value (rows 20, 21 and 31 of the bad-value audit): a slot's ``candidates``, size arguments of
its modules, and ``merge``."""

import copy

import pytest

from metacompose.router import build_pool

TEMPLATE = {
    "nodes": {
        "inner": {
            "type": "MLPBlock",
            "candidates": 2,
            "args": {"in_features": 1, "hidden": [4], "out_features": 3},
        },
        "outer": {
            "candidates": [
                {"type": "MLPBlock", "args": {"in_features": 3, "hidden": [4], "out_features": 1}},
                {"type": "Linear", "args": {"in_features": 3, "out_features": 1}},
            ]
        },
    },
    "edges": [["inner", "outer"]],
}


def template(**changes):
    """``TEMPLATE`` with ``changes`` applied: dotted path (``nodes.inner.candidates``) -> value."""
    t = copy.deepcopy(TEMPLATE)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = t
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value
    return t


P = "router.template.nodes"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"nodes.inner.candidates": 10**12}, rf"{P}.inner.candidates: .*1..64, got 1000000000000"),
        ({"nodes.inner.candidates": 65}, rf"{P}.inner.candidates: .*1..64, got 65"),
        ({"nodes.inner.candidates": 0}, rf"{P}.inner.candidates: .*1..64, got 0"),
        ({"nodes.inner.candidates": -3}, rf"{P}.inner.candidates: .*1..64, got -3"),
        ({"nodes.inner.candidates": "abc"}, rf"{P}.inner.candidates: .*integer.*got 'abc'"),
        ({"nodes.inner.candidates": 2.5}, rf"{P}.inner.candidates: .*integer.*got 2.5"),
        ({"nodes.inner.candidates": True}, rf"{P}.inner.candidates: .*integer.*got True"),
        ({"nodes.outer.candidates": []}, rf"{P}.outer.candidates: .*got 0 entries"),
        ({"nodes.outer.candidates": ["abc"]}, rf"{P}.outer.candidates\[0\]: .*got 'abc'"),
        ({"nodes.inner.args.hidden": [0]}, rf"{P}.inner.args.hidden: .*>= 1, got \[0\]"),
        ({"nodes.inner.args.hidden": [4, -1]}, rf"{P}.inner.args.hidden: .*got \[4, -1\]"),
        ({"nodes.inner.args.out_features": 0}, rf"{P}.inner.args.out_features: .*got 0"),
        (
            {"nodes.outer.candidates.1.args.in_features": 0},
            rf"{P}.outer.candidates\[1\].args.in_features: .*got 0",
        ),
        ({"merge": "bogus"}, r"router.template.merge: .*got 'bogus'"),
        ({"merge": {"outer": "bogus"}}, r"router.template.merge.outer: .*got 'bogus'"),
    ],
)
def test_template_refuses(changes, named):
    with pytest.raises(ValueError, match=named):
        build_pool(template(**changes))


def test_default_and_typical_templates_still_build():
    assert build_pool(TEMPLATE).num_candidates == {"inner": 2, "outer": 2}
    pool = build_pool(template(**{"nodes.inner.candidates": 64, "nodes.inner.args.hidden": [1]}))
    assert pool.num_candidates["inner"] == 64
    assert build_pool(template(merge={})).merge_ops == {}
