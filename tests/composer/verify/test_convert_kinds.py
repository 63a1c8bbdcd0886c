"""Every model kind the project trains converts to an IR equal to the torch graph (float64, 1e-10):
smooth activations, Identity, routed exports with FiLM / low-rank modulations folded in, and conv
classifiers with batch norm (statistics fixed at a given batch)."""

import pytest
import torch

from metacompose.graph import ModuleGraph
from metacompose.models import conv_graph, mlp_graph, residual_mlp_graph
from metacompose.modules.linear import Identity, RegressionHead
from metacompose.modules.mlp import MLPBlock
from metacompose.router.modulation import film_fold
from metacompose.symbolic import Activation
from metacompose.verify import graph_forward, graph_to_network
from metacompose.verify.reference import batch_stats, reference_forward


def _params(graph, gen, scale=1.0):
    return {
        k: scale * torch.randn(v.shape, generator=gen, dtype=torch.float64)
        for k, v in graph.named_parameters()
    }


@pytest.mark.parametrize("act", ["tanh", "sin", "gelu", "silu", "relu"])
def test_smooth_activations_convert_exactly(act):
    gen = torch.Generator().manual_seed(0)
    graph = mlp_graph(in_features=2, hidden=[6, 5], out_features=2, activation=act)
    params = _params(graph, gen)
    x = 2 * torch.randn(128, 2, generator=gen, dtype=torch.float64)
    net = graph_to_network(graph, params)
    torch.testing.assert_close(net(x), graph_forward(graph, params, x), atol=1e-10, rtol=1e-10)
    kinds = {nd.op.kind for nd in net.nodes.values() if isinstance(nd.op, Activation)}
    assert kinds == (set() if act == "relu" else {act})


def test_residual_tanh_and_identity_merges():
    gen = torch.Generator().manual_seed(1)
    graph = residual_mlp_graph(in_features=2, width=4, blocks=2, block_hidden=3, activation="tanh")
    params = _params(graph, gen)
    x = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(
        graph_to_network(graph, params)(x), graph_forward(graph, params, x), atol=1e-10, rtol=0
    )
    nodes = {
        "stem": MLPBlock(in_features=3, hidden=[4], out_features=3, activation="silu"),
        "a": MLPBlock(in_features=3, hidden=[4], out_features=3, activation="sin"),
        "skip": Identity(features=3),
        "head": RegressionHead(in_features=6, out_features=1),
    }
    edges = [("stem", "a"), ("stem", "skip"), ("a", "head"), ("skip", "head")]
    g2 = ModuleGraph(nodes=nodes, edges=edges, merge={"head": "concat"})
    p2 = _params(g2, gen)
    x2 = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(
        graph_to_network(g2, p2)(x2), graph_forward(g2, p2, x2), atol=1e-10, rtol=0
    )
    only = ModuleGraph(nodes={"i": Identity(features=3)}, edges=[])
    torch.testing.assert_close(graph_to_network(only)(x2), x2, atol=0, rtol=0)


def test_film_and_low_rank_folding_matches_the_modulated_layer():
    """A FiLM + low-rank modulated Linear equals the folded Affine the converter is handed."""
    gen = torch.Generator().manual_seed(2)
    w, b = (
        torch.randn(5, 3, generator=gen, dtype=torch.float64),
        torch.randn(5, dtype=torch.float64),
    )
    gamma, beta = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    u, v = torch.randn(5, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    x = torch.randn(32, 3, generator=gen, dtype=torch.float64)
    modulated = (1 + gamma) * (x @ (w + u @ v.T).T + b) + beta
    wf, bf = film_fold(w, b, gamma=gamma, beta=beta, u=u, v=v)
    graph = ModuleGraph(nodes={"h": RegressionHead(in_features=3, out_features=5)}, edges=[])
    params = {"h.linear.weight": wf, "h.linear.bias": bf}
    torch.testing.assert_close(graph_to_network(graph, params)(x), modulated, atol=1e-10, rtol=0)


def test_routed_export_converts(tmp_path):
    """A routed learner's per-task export (tanh pool, FiLM folded) converts to its own forward."""
    from metacompose.build import build_family, build_learner
    from metacompose.config import load_config

    cfg = load_config("configs/compositional.yaml")
    family = build_family(cfg.task)
    learner = build_learner(cfg, family)
    batch = family.sample(2, shots=5, query=7, generator=torch.Generator().manual_seed(0))
    exports = learner.export_tasks(batch, steps=1)
    for t, e in enumerate(exports):
        x = batch.query_x[t].reshape(7, -1).double()
        for params in (e.meta, e.adapted):
            net = graph_to_network(e.graph, params)
            ref = graph_forward(e.graph, params, x)
            torch.testing.assert_close(net(x), ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("depth,norm", [(2, "batch"), (1, "none"), (3, "batch")])
def test_conv_classifier_converts_with_fixed_batch_statistics(depth, norm):
    gen = torch.Generator().manual_seed(3)
    graph = conv_graph(image_size=8, n_way=5, filters=3, depth=depth, norm=norm)
    params = _params(graph, gen, 0.5)
    stats_x = torch.rand(6, 64, generator=gen, dtype=torch.float64)
    x = torch.rand(40, 64, generator=gen, dtype=torch.float64)
    net = graph_to_network(graph, params, stats_x=stats_x)
    ref = reference_forward(graph, params, x, stats_x=stats_x)
    torch.testing.assert_close(net(x), ref, atol=1e-10, rtol=1e-10)
    # on the statistics batch itself the frozen reference is the plain (transductive) graph
    plain = graph.double().apply_params(params, stats_x.reshape(6, 1, 8, 8))
    torch.testing.assert_close(
        reference_forward(graph, params, stats_x, stats_x=stats_x), plain, atol=1e-10, rtol=0
    )
    if norm == "batch":
        assert len(batch_stats(graph, params, stats_x)) == depth
