"""MAML++'s per-step batch-norm weights and biases (algo.per_step_bn) against a hand-unrolled
float64 reference: the conv network written out by hand (``net``), each inner-loop state ``s``
normalised with its own copy ``min(s, S)`` of every batch-norm weight and bias, which the inner loop
never adapts; the meta-gradient reaches the graph's weights and every copy."""

import pytest
import torch
import torch.nn.functional as F
from test_conv_meta_gradients import DEPTH, FILTERS, LR, SIZE, STEPS, WAYS, T, conv_batch, net

from metacompose.algorithms import InnerLoop, MetaLearner
from metacompose.algorithms.per_step_norm import batch_norm_keys
from metacompose.models import conv_graph, mlp_graph


@pytest.fixture
def batch():
    return conv_batch()


def make(algorithm="maml", vectorize=True, **kw):
    torch.manual_seed(3)
    graph = conv_graph(image_size=SIZE, n_way=WAYS, filters=FILTERS, depth=DEPTH).double()
    inner = InnerLoop(lr=LR, steps=STEPS, vectorize=vectorize)
    learner = MetaLearner(
        graph=graph, algorithm=algorithm, loss="cross_entropy", inner=inner, per_step_bn=True, **kw
    ).double()
    with torch.no_grad():  # distinct copies per state: a learner mixing them up cannot pass
        g = torch.Generator().manual_seed(4)
        for p in learner.step_norms.copies.values():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return learner


def copies_of(learner):
    """Copy ``s`` of each batch-norm key, by hand from the parameter names."""
    return {
        (k, s): learner.step_norms.copies[f"{k}.state{s}".replace(".", "__")].detach()
        for k in batch_norm_keys(learner.graph)
        for s in range(STEPS + 1)
    }


def reference(learner, batch, *, first_order):
    """Meta-gradients by hand: every graph weight, then ``(key, s)`` for every copy."""
    bn = batch_norm_keys(learner.graph)
    leaves = {
        k: v.detach().clone().requires_grad_(True) for k, v in learner.graph.named_parameters()
    }
    copies = {ks: v.clone().requires_grad_(True) for ks, v in copies_of(learner).items()}
    adapted = learner.adapt_keys  # the reference checks below that no norm key is among them
    total = 0.0
    for t in range(T):
        fast = dict(leaves)
        for s in range(STEPS):
            state = {**fast, **{k: copies[(k, s)] for k in bn}}
            loss = F.cross_entropy(net(state, batch.support_x[t]), batch.support_y[t])
            grads = torch.autograd.grad(
                loss, [fast[k] for k in adapted], create_graph=not first_order
            )
            for k, g in zip(adapted, grads):
                fast[k] = fast[k] - LR * (g.detach() if first_order else g)
        state = {**fast, **{k: copies[(k, STEPS)] for k in bn}}
        total = total + F.cross_entropy(net(state, batch.query_x[t]), batch.query_y[t])
    wrt = [*leaves.values(), *copies.values()]
    grads = torch.autograd.grad(total / T, wrt, allow_unused=True)
    keys = [*leaves, *copies]
    return {k: torch.zeros_like(w) if g is None else g for k, g, w in zip(keys, grads, wrt)}


def learner_grads(learner, batch):
    learner.zero_grad()
    learner.meta_step(batch).objective.backward()
    params = dict(learner.graph.named_parameters())
    params.update(
        {(k, s): learner.step_norms.copies[f"{k}.state{s}".replace(".", "__")]
         for k, s in copies_of(learner)}
    )  # fmt: skip
    return {k: torch.zeros_like(p) if p.grad is None else p.grad for k, p in params.items()}


@pytest.mark.parametrize(
    "algorithm, vectorize, checkpoint",
    [("maml", True, False), ("maml", False, False), ("maml", True, True), ("maml", False, True),
     ("fomaml", True, False), ("anil", False, False)],
)  # fmt: skip
def test_meta_gradient_matches_the_hand_unrolled_reference(algorithm, vectorize, checkpoint, batch):
    learner = make(algorithm, vectorize, checkpoint_inner=checkpoint)
    bn = set(batch_norm_keys(learner.graph))
    assert bn and not bn & set(learner.adapt_keys)  # never adapted
    ref = reference(learner, batch, first_order=learner.first_order)
    got = learner_grads(learner, batch)
    assert set(ref) == set(got)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-10, atol=1e-10, msg=str(k))
    # second order: every state's copy shapes the outcome; first order: only the last one does
    used = [(k, s) for k, s in copies_of(learner) if not learner.first_order or s == STEPS]
    assert all(ref[ks].abs().max() > 1e-6 for ks in used)
    assert all(ref[ks].abs().max() == 0 for ks in copies_of(learner) if ks not in used)
    assert all(ref[k].abs().max() == 0 for k in bn)  # the graph's own norms are unused


@pytest.mark.parametrize("vectorize", [True, False])
def test_more_evaluation_steps_than_trained_keep_the_last_copy(vectorize, batch):
    """Adapted by export_tasks over STEPS + 2 first-order steps: states past STEPS read copy
    STEPS, and the exported graph carries that copy."""
    learner = make("maml", vectorize, eval_guard=False)
    bn, copies = batch_norm_keys(learner.graph), copies_of(learner)
    exports = learner.export_tasks(batch, steps=STEPS + 2)
    for t in range(T):
        p = {k: v.detach() for k, v in learner.graph.named_parameters()}
        for s in range(STEPS + 2):
            state = {**p, **{k: copies[(k, min(s, STEPS))] for k in bn}}
            leaves = {k: state[k].clone().requires_grad_(True) for k in learner.adapt_keys}
            loss = F.cross_entropy(net({**state, **leaves}, batch.support_x[t]), batch.support_y[t])
            grads = torch.autograd.grad(loss, list(leaves.values()))
            p.update({k: p[k] - LR * g for k, g in zip(leaves, grads)})
        want = {**p, **{k: copies[(k, STEPS)] for k in bn}}
        got = exports[t].adapted
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-10, atol=1e-10, msg=k)
        assert all(torch.equal(exports[t].meta[k], copies[(k, 0)]) for k in bn)


def test_a_model_without_batch_norm_or_with_reptile_is_refused():
    with pytest.raises(ValueError, match="per_step_bn: the model has no batch-norm layer"):
        MetaLearner(graph=mlp_graph(), per_step_bn=True)
    with pytest.raises(ValueError, match="per_step_bn: not available with reptile"):
        make("reptile")


def test_train_eval_inspect_a_per_step_bn_classifier(tmp_path, capsys):
    """The option from a config: 4 meta-iterations of MAML on digits with two inner steps, then
    `metacompose eval` and `inspect` on its checkpoint; the checkpoint holds the 3 copies."""
    from pathlib import Path

    from metacompose.cli.main import main

    base = Path(__file__).resolve().parents[3] / "configs" / "base" / "digits.yaml"
    cfg = tmp_path / "psbn.yaml"
    cfg.write_text(
        f"defaults: [{base}]\nalgo: {{per_step_bn: true, inner_steps: 2}}\n"
        "trainer: {max_steps: 4, val_check_interval: 4, enable_progress_bar: false}\n"
        "data: {meta_batch_size: 2, val_tasks: 4}\n"
    )
    assert main(["train", str(cfg), f"out_dir={tmp_path}", "name=run"]) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    copies = [k for k in state if k.startswith("learner.step_norms.copies.")]
    assert len(copies) == 3 * 2 * 4  # states 0..2 x (weight, bias) x 4 norm layers
    capsys.readouterr()
    assert main(["eval", str(ckpt), "--tasks", "4"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [r[0] for r in rows if r and r[0].isdigit()][:6] == ["0", "1", "2", "3", "4", "5"]
    assert main(["inspect", str(ckpt), "--tasks", "1", "--out", str(tmp_path / "g")]) == 0
