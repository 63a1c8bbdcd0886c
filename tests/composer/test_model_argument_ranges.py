"""Model builder arguments out of range are refused with a ``ValueError`` naming the argument as
``model.args`` spells it (row 35 of the bad-value audit, and every size of ``MODEL_BUILDERS``)."""

import pytest

from metacompose.models import conv_graph, mlp_graph, residual_mlp_graph


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"hidden": [0]}, r"hidden=\[0\]: widths must be >= 1"),
        ({"hidden": [40, -3]}, r"hidden=\[40, -3\]: widths must be >= 1"),
        ({"in_features": 0}, "in_features must be >= 1, got 0"),
        ({"out_features": -1}, "out_features must be >= 1, got -1"),
    ],
)
def test_mlp_refuses(args, named):
    with pytest.raises(ValueError, match=named):
        mlp_graph(**args)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"blocks": -1}, "blocks must be >= 0, got -1"),
        ({"block_hidden": 0}, "block_hidden must be >= 1, got 0"),
        ({"width": 0}, "width must be >= 1, got 0"),
        ({"in_features": 0}, "in_features must be >= 1, got 0"),
        ({"out_features": 0}, "out_features must be >= 1, got 0"),
    ],
)
def test_residual_mlp_refuses(args, named):
    with pytest.raises(ValueError, match=named):
        residual_mlp_graph(**args)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"n_way": 0}, "n_way must be >= 1, got 0"),
        ({"depth": 0}, "depth must be >= 1, got 0"),
        ({"image_size": 0}, "image_size must be >= 1, got 0"),
        ({"image_size": -1}, "image_size must be >= 1, got -1"),
        ({"filters": 0}, "filters must be >= 1, got 0"),
        ({"in_channels": 0}, "in_channels must be >= 1, got 0"),
    ],
)
def test_conv_refuses(args, named):
    with pytest.raises(ValueError, match=named):
        conv_graph(**args)


def test_defaults_and_typical_values_still_build():
    mlp_graph()
    mlp_graph(in_features=2, hidden=[1], out_features=3)
    residual_mlp_graph()
    graph = residual_mlp_graph(blocks=0, block_hidden=1, width=1)  # blocks=0: stem -> head
    assert list(graph.graph) == ["stem", "head"]
    conv_graph(filters=2, depth=1, image_size=2, n_way=1)
