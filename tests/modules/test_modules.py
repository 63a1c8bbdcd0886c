import pytest
import torch
from torch.func import vmap

from metacompose.modules import (
    MODULE_TYPES,
    ClassificationHead,
    ConvBlock,
    Identity,
    Linear,
    MLPBlock,
    RegressionHead,
    ResidualMLPBlock,
    SetEncoder,
    build_module,
)

EXAMPLES = [
    (Linear(in_features=3, out_features=5), (7, 3), (7, 5)),
    (MLPBlock(in_features=3, hidden=[8, 8], out_features=4), (7, 3), (7, 4)),
    (ResidualMLPBlock(features=6, hidden=9), (7, 6), (7, 6)),
    (ConvBlock(in_channels=1, image_size=28, filters=8), (5, 1, 28, 28), (5, 8)),
    (SetEncoder(in_features=2, hidden=16, out_features=4), (3, 10, 2), (3, 4)),
    (RegressionHead(in_features=4, out_features=2), (7, 4), (7, 2)),
    (ClassificationHead(in_features=4, n_classes=5), (7, 4), (7, 5)),
    (Identity(features=3), (7, 3), (7, 3)),
]


@pytest.mark.parametrize("module, x_shape, y_shape", EXAMPLES, ids=lambda v: type(v).__name__)
def test_shapes_follow_declared_spaces(module, x_shape, y_shape):
    y = module(torch.randn(x_shape))
    assert y.shape == y_shape
    assert tuple(x_shape[1:])[-len(module.in_space.shape) :] == module.in_space.shape
    assert tuple(y_shape[1:]) == module.out_space.shape


@pytest.mark.parametrize("module, x_shape, y_shape", EXAMPLES, ids=lambda v: type(v).__name__)
def test_spec_rebuilds_the_same_architecture(module, x_shape, y_shape):
    rebuilt = build_module(type(module).__name__, module.spec())
    rebuilt.load_state_dict(module.state_dict())
    x = torch.randn(x_shape)
    torch.testing.assert_close(rebuilt(x), module(x), rtol=0, atol=0)


def test_functional_call_uses_given_params_and_never_mutates():
    m = MLPBlock(in_features=2, hidden=[4], out_features=3)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    params = {k: torch.zeros_like(v) for k, v in m.named_parameters()}
    out = m.apply_params(params, torch.randn(5, 2))
    torch.testing.assert_close(out, torch.zeros(5, 3))  # relu(0) everywhere
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_identity_has_no_parameters_and_returns_its_input():
    m = build_module("Identity", {"features": 2})
    x = torch.randn(4, 2)
    assert list(m.parameters()) == [] and m.apply_params({}, x) is x


def test_mlp_block_matches_hand_written_math():
    m = MLPBlock(in_features=2, hidden=[4], out_features=3, activate_output=False).double()
    x = torch.randn(6, 2, dtype=torch.float64)
    w1, b1, w2, b2 = (p for _, p in m.named_parameters())
    ref = torch.relu(x @ w1.T + b1) @ w2.T + b2
    torch.testing.assert_close(m(x), ref, rtol=1e-12, atol=1e-12)


def test_sine_activation_block_matches_hand_written_math():
    m = MLPBlock(
        in_features=1, hidden=[5], out_features=2, activation="sin", activate_output=False
    ).double()
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]
    w1, b1, w2, b2 = (p for _, p in m.named_parameters())
    torch.testing.assert_close(m(x), torch.sin(x @ w1.T + b1) @ w2.T + b2, rtol=1e-12, atol=1e-12)


def test_residual_block_is_identity_plus_branch():
    m = ResidualMLPBlock(features=3, hidden=5).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    branch = m.outer(torch.relu(m.inner(x)))
    torch.testing.assert_close(m(x), x + branch, rtol=1e-12, atol=1e-12)


def test_conv_norm_keeps_no_running_statistics_across_tasks():
    m = ConvBlock(in_channels=1, image_size=28, filters=4, norm="batch")
    assert not list(m.buffers())  # no running mean/var that tasks could share
    x = torch.randn(3, 6, 1, 28, 28)
    params = dict(m.named_parameters())
    batched = vmap(lambda xt: m.apply_params(params, xt))(x)
    per_task = torch.stack([m(x[t]) for t in range(3)])
    torch.testing.assert_close(batched, per_task, rtol=1e-5, atol=1e-5)
    # A task's output depends only on its own batch statistics.
    x2 = x.clone()
    x2[1] = torch.randn(6, 1, 28, 28) * 5
    batched2 = vmap(lambda xt: m.apply_params(params, xt))(x2)
    torch.testing.assert_close(batched2[0], batched[0], rtol=1e-5, atol=1e-5)


def test_set_encoder_is_permutation_invariant():
    m = SetEncoder(in_features=2, hidden=8, out_features=4).double()
    x = torch.randn(3, 10, 2, dtype=torch.float64)
    perm = torch.randperm(10)
    torch.testing.assert_close(m(x[:, perm]), m(x), rtol=1e-12, atol=1e-12)


def test_unknown_module_type_and_bad_args_name_the_culprit():
    with pytest.raises(ValueError, match="unknown module type 'Nope'"):
        build_module("Nope", {})
    with pytest.raises(ValueError, match="MLPBlock"):
        build_module("MLPBlock", {"in_features": 2, "out_features": 3, "widht": 4})
    assert set(MODULE_TYPES) >= {"Linear", "MLPBlock", "ConvBlock", "SetEncoder"}


def test_conv_meta_step_runs_under_bf16_autocast():
    """The fused batch-norm kernel broke bf16 second-order MAML inside torch.func.grad."""
    from metacompose.algorithms import MetaLearner
    from metacompose.models import conv_graph
    from metacompose.tasks import TaskBatch

    learner = MetaLearner(
        graph=conv_graph(filters=4, n_way=3), algorithm="maml", loss="cross_entropy"
    )
    x, y = torch.randn(2, 3, 1, 28, 28), torch.randint(0, 3, (2, 3))
    batch = TaskBatch(support_x=x, support_y=y, query_x=x, query_y=y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        objective = learner.meta_step(batch).objective
    objective.backward()
    grads = [p.grad for p in learner.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
