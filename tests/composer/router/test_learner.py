"""RoutedMetaLearner: routing gradients, vmapped vs per-task loop vs a hand-unrolled reference,
hard-routed export, and the supported algorithm / adaptation combinations."""

import copy

import pytest
import torch
from routed_testing import TEMPLATE, routed_learner

from metacompose.router import (
    ArgmaxRouting,
    RelaxedRouting,
    RoutedMetaLearner,
    TemperatureSchedule,
    build_pool,
    relaxed_route,
)
from metacompose.router.anchors import ModulationAnchors
from metacompose.router.build import build_router
from metacompose.router.hypernet import support_features
from metacompose.router.inspection import inspect_routed
from metacompose.tasks import CompositionalFamily

T, K, Q = 5, 6, 7


def make_learner(*, dtype=torch.float64, **kw):
    learner = routed_learner(**kw)
    with torch.no_grad():  # move the generated modulations away from zero so they matter
        learner.router.modulation.weight.normal_(0.0, 0.1)
    return learner.to(dtype)


def batch(dtype=torch.float64, n=T):
    fam = CompositionalFamily()
    return fam.sample(n, shots=K, query=Q, generator=torch.Generator().manual_seed(11)).to(
        "cpu", dtype
    )


def grads(learner, b):
    out = learner.meta_step(b)
    names = [n for n, p in learner.named_parameters()]
    g = torch.autograd.grad(out.objective, list(learner.parameters()), allow_unused=True)
    return out, dict(zip(names, g))


def test_routing_gradients_reach_router_and_encoder():
    learner = make_learner()
    _, g = grads(learner, batch())
    for prefix in (
        "router.encoder.",
        "router.trunk.",
        "router.logits.inner",
        "router.logits.outer",
        "router.modulation.",
        "graph.inner.",
        "graph.outer.",
    ):
        sel = [v for k, v in g.items() if k.startswith(prefix)]
        assert sel and all(v is not None and torch.isfinite(v).all() for v in sel), prefix
        assert sum(v.abs().sum() for v in sel) > 0, prefix


@pytest.mark.parametrize("algorithm", ["maml", "metasgd", "anil", "fomaml"])
def test_vmapped_inner_loop_agrees_with_per_task_loop(algorithm):
    a = make_learner(algorithm=algorithm)
    b_ = copy.deepcopy(a)
    b_.vectorize = False
    data = batch()
    out_a, ga = grads(a, data)
    out_b, gb = grads(b_, data)
    torch.testing.assert_close(out_a.query_loss, out_b.query_loss, rtol=1e-10, atol=1e-12)
    for k in ga:
        if ga[k] is None:
            assert gb[k] is None, k
        else:
            torch.testing.assert_close(ga[k], gb[k], rtol=1e-8, atol=1e-12, msg=k)


def test_meta_objective_matches_hand_unrolled_reference():
    """Independent path: per task, autograd.grad(create_graph=True) on the pool, no vmap/torch.func."""
    learner = make_learner(low_rank=0, balance_weight=0.0, entropy_weight=0.0)
    data = batch()
    gen_state = learner.noise_generator.get_state()
    out, g = grads(learner, data)
    learner.noise_generator.set_state(gen_state)
    ro = learner.router(support_features(data.support_x, data.support_y))
    from metacompose.router.relaxed import gumbel_noise

    tau = learner.training_routing.schedule(0)
    w = {
        s: relaxed_route(
            ro.logits[s],
            tau=tau,
            noise=gumbel_noise((T, learner.graph.num_candidates[s]), learner.noise_generator),
            straight_through=True,
        )
        for s in ("inner", "outer")
    }
    pool = dict(learner.graph.named_parameters())
    total = 0.0
    for t in range(T):
        mods = {k: v[t] for k, v in ro.modulations.items()}
        fast = dict(pool)
        for _ in range(learner.inner_steps):
            p = {**fast, **mods, "route.inner": w["inner"][t], "route.outer": w["outer"][t]}
            loss = (
                (learner.graph.apply_params(p, data.support_x[t]) - data.support_y[t]) ** 2
            ).mean()
            keys = list(fast)
            gr = torch.autograd.grad(loss, [fast[k] for k in keys], create_graph=True)
            fast = {k: fast[k] - learner.inner_lr * d for k, d in zip(keys, gr)}
        p = {**fast, **mods, "route.inner": w["inner"][t], "route.outer": w["outer"][t]}
        total = (
            total + ((learner.graph.apply_params(p, data.query_x[t]) - data.query_y[t]) ** 2).mean()
        )
    ref = total / T
    torch.testing.assert_close(out.objective.detach(), ref.detach(), rtol=1e-10, atol=1e-12)
    names = [n for n, _ in learner.named_parameters()]
    rg = torch.autograd.grad(ref, list(learner.parameters()), allow_unused=True)
    for k, v in zip(names, rg):
        if v is not None:
            torch.testing.assert_close(g[k], v, rtol=1e-8, atol=1e-12, msg=k)


def test_hard_routing_at_eval_gives_the_inspected_graph():
    learner = make_learner().eval()
    fam = CompositionalFamily()
    data = batch(n=6)
    curve = learner.evaluate(data, steps=3)
    reports = inspect_routed(learner, fam, data, steps=3)
    logits = learner.router(support_features(data.support_x, data.support_y)).logits
    from metacompose.graph import ModuleGraph

    for t, r in enumerate(reports):
        nodes = {n["name"]: n for n in r.report["nodes"]}
        for slot in ("inner", "outer"):
            assert nodes[slot]["candidate"] == int(logits[slot][t].argmax())
            assert nodes[slot]["module"] == f"{slot}[{nodes[slot]['candidate']}]"
        rebuilt = ModuleGraph.from_json_dict(r.report["graph"])
        assert rebuilt.to_json_dict() == r.report["graph"]
        pred = rebuilt.apply_params(r.weights, data.query_x[t])
        mse = ((pred - data.query_y[t]) ** 2).mean()
        torch.testing.assert_close(mse, curve[-1, t], rtol=1e-10, atol=1e-12)
        assert r.report["task"]["f"] in fam.inner and r.report["task"]["g"] in fam.outer
        assert nodes["outer"]["weight_change_norm"] > 0 and nodes["inner"]["modulation_norm"] > 0


def test_uniform_routing_is_task_independent():
    learner = make_learner(routing="uniform")
    assert len(learner.router.logits) == 0
    w = learner.eval_route(batch())[1].weights
    torch.testing.assert_close(w["inner"], torch.full((T, 3), 1 / 3, dtype=torch.float64))
    out = learner.meta_step(batch())
    assert torch.isfinite(out.objective)


def test_metalearner_style_adapt_matches_evaluate():
    learner = make_learner().eval()
    data = batch()
    fast, frozen = learner.adapt(data.support_x, data.support_y, steps=3, first_order=True)
    mse = learner.query_loss(fast, frozen, data.query_x, data.query_y, metric=True)
    torch.testing.assert_close(mse, learner.evaluate(data, steps=3)[-1], rtol=1e-10, atol=1e-12)


def test_unsupported_combinations_fail_clearly():
    with pytest.raises(ValueError, match="routed learner supports"):
        make_learner(algorithm="reptile")
    with pytest.raises(ValueError, match="adapts nothing"):
        make_learner(adapt_nodes=[])


def test_anchors_start_each_task_from_a_slotwise_best_pair_by_support_loss():
    """Brute force over every (inner, outer) anchor pair with the anchor-free learner whose
    modulations are shifted by that pair: the picks are coordinate-wise optimal on the *support*
    loss (coordinate descent run to convergence here), and the anchored learner's step-0 query
    MSE is that of its picked pair."""
    learner = make_learner(anchors=4, anchor_init=1.0, anchor_rounds=100).eval()
    data = batch()
    picks = record_picks(learner)
    got = learner.evaluate(data, steps=0)[0]
    pick = picks[0]
    on_support = type(data)(support_x=data.support_x, support_y=data.support_y,
                            query_x=data.support_x, query_y=data.support_y)  # fmt: skip
    support = torch.zeros(4, 4, T, dtype=torch.float64)
    query = torch.zeros(4, 4, T, dtype=torch.float64)
    for mi in range(4):
        for mo in range(4):
            ref = copy.deepcopy(learner)
            ref.anchors = None
            m = {"inner": mi, "outer": mo}
            flat = torch.cat([learner.anchors.anchor(k)[m[k.split(".")[1]]].flatten()
                              for k, _ in ref.router.layout])  # fmt: skip
            with torch.no_grad():
                ref.router.modulation.bias += flat
            support[mi, mo] = ref.evaluate(on_support, steps=0)[0]
            query[mi, mo] = ref.evaluate(data, steps=0)[0]
    ti = torch.arange(T)
    pi, po = pick["inner"], pick["outer"]
    assert len(set(zip(pi.tolist(), po.tolist()))) > 1  # tasks do not all pick the same pair
    torch.testing.assert_close(got, query[pi, po, ti], rtol=1e-10, atol=1e-12)
    chosen = support[pi, po, ti]
    assert bool((chosen <= support[:, po, ti].min(dim=0).values + 1e-12).all())
    assert bool((chosen <= support[pi, :, ti].min(dim=1).values + 1e-12).all())


def test_meta_gradient_reaches_only_the_picked_anchors():
    learner = make_learner(anchors=6, anchor_init=1.0).train()
    data = batch(n=3)
    picks = record_picks(learner)
    _, g = grads(learner, data)
    assert len(picks) == 1
    per_slot = {}
    for name, grad in g.items():
        if name.startswith("anchors."):
            slot = name.split("__")[1]  # anchors.mod__<slot>__...
            per_slot[slot] = per_slot.get(slot, 0) + grad.flatten(1).abs().sum(dim=1)
    assert set(per_slot) == {"inner", "outer"}
    for slot, rows in per_slot.items():
        used = torch.nonzero(rows > 0).flatten().tolist()
        assert set(used) == set(picks[0][slot].tolist()), slot


def record_picks(learner):
    """Record every anchor pick of ``learner`` (slot -> ``(T,)``) in the returned list."""
    picks, pick = [], learner.anchors.pick
    learner.anchors.pick = lambda *a: picks.append(pick(*a)) or picks[-1]
    return picks


def test_anchors_fail_clearly_without_modulations():
    pool = build_pool(TEMPLATE)
    router = build_router(pool=pool, in_features=1, out_features=1, encoder_hidden=8, embedding=4,
                          hidden=8, routed=True, film=False, low_rank=0)  # fmt: skip
    with pytest.raises(ValueError, match="anchors need generated modulations"):
        ModulationAnchors(layout=router.layout, slot_of=router.layout_slot, count=2)


def plain(pool, router):
    """A routed learner with the default (relaxed / argmax) policies."""
    training = RelaxedRouting(schedule=TemperatureSchedule())
    return RoutedMetaLearner(pool=pool, router=router, training_routing=training,
                             eval_routing=ArgmaxRouting())  # fmt: skip


def test_vector_descriptor_reaches_the_router():
    torch.manual_seed(0)
    pool = build_pool(TEMPLATE)
    router = build_router(
        pool=pool,
        in_features=1,
        out_features=1,
        encoder_hidden=8,
        embedding=4,
        hidden=8,
        routed=True,
        film=True,
        low_rank=0,
        descriptor_dim=8,
    )
    learner = plain(pool, router).double()
    fam = CompositionalFamily(descriptor="onehot")
    data = fam.sample(4, shots=K, query=Q, generator=torch.Generator().manual_seed(1)).to(
        "cpu", torch.float64
    )
    _, g = grads(learner, data)
    assert g["router.trunk.layers.0.weight"][:, -8:].abs().sum() > 0
    with pytest.raises(ValueError, match="takes a task descriptor"):
        learner.meta_step(batch())


def descriptor_router(pool, **kw):
    """A small router over ``pool`` reading an 8-dim vector descriptor."""
    return build_router(
        pool=pool, in_features=1, out_features=1, encoder_hidden=8, embedding=4, hidden=8,
        routed=True, film=True, low_rank=0, descriptor_dim=8, **kw,
    )  # fmt: skip


def test_descriptor_slots_route_each_slot_from_its_own_slice():
    """Program-given routing: a slot's logits are a linear map of its descriptor slice alone."""
    torch.manual_seed(0)
    pool = build_pool(TEMPLATE)
    router = descriptor_router(pool, descriptor_slots={"inner": (0, 4), "outer": (4, 8)})
    fam = CompositionalFamily(descriptor="onehot")
    b = fam.sample(6, shots=K, query=Q, generator=torch.Generator().manual_seed(1))
    out = router(support_features(b.support_x, b.support_y, 0), b.descriptor)
    for slot, (lo, hi) in {"inner": (0, 4), "outer": (4, 8)}.items():
        head = router.logits[slot]
        expected = b.descriptor[:, lo:hi] @ head.weight.T + head.bias
        torch.testing.assert_close(out.logits[slot], expected, rtol=0, atol=1e-6)
    # another support set with the same descriptor: the same logits (the set encoder is not read)
    b2 = fam.sample(6, shots=K, query=Q, generator=torch.Generator().manual_seed(2))
    out2 = router(support_features(b2.support_x, b2.support_y, 0), b.descriptor)
    for slot in out.logits:
        torch.testing.assert_close(out.logits[slot], out2.logits[slot], rtol=0, atol=0)
    # routing gradients reach the descriptor heads through the meta-objective
    learner = plain(pool, router).double()
    _, g = grads(learner, b.to("cpu", torch.float64))
    assert g["router.logits.inner.weight"].abs().sum() > 0
    assert g["router.logits.outer.weight"].abs().sum() > 0


@pytest.mark.parametrize(
    ("slots", "match"),
    [({"middle": (0, 4)}, "'middle' is not a routed slot"), ({"inner": (6, 10)}, r"\[6, 10\)")],
)
def test_bad_descriptor_slots_fail_clearly(slots, match):
    pool = build_pool(TEMPLATE)
    with pytest.raises(ValueError, match=match):
        descriptor_router(pool, descriptor_slots=slots)


def test_descriptor_one_to_one_starts_as_the_identity_map():
    pool = build_pool({**TEMPLATE, "nodes": {**TEMPLATE["nodes"], "inner": {
        **TEMPLATE["nodes"]["inner"], "candidates": 4}}})  # fmt: skip
    router = descriptor_router(pool, descriptor_slots={"inner": (0, 4)}, descriptor_one_to_one=True)
    fam = CompositionalFamily(descriptor="onehot")
    b = fam.sample(16, shots=K, query=Q, generator=torch.Generator().manual_seed(4))
    out = router(support_features(b.support_x, b.support_y, 0), b.descriptor)
    assert torch.equal(out.logits["inner"].argmax(-1), b.info["f"])
    with pytest.raises(ValueError, match="reads 8 descriptor entries but has 4 candidates"):
        descriptor_router(pool, descriptor_slots={"inner": (0, 8)}, descriptor_one_to_one=True)
