"""The router's hard decision as an optimisation: the best-scoring graph that obeys the rules.

Each slot picks exactly one candidate module; slots are wired by fixed ``slot_edges``. z3
``Optimize`` maximises the summed scores subject to the :class:`CompositionRules` (interface
compatibility along slot edges, parameter budget, required / forbidden / mutually exclusive
modules). :func:`brute_force_selection` is the reference it is tested against.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import networkx as nx
import z3

from metacompose.symbolic.rounding import z3_rational
from metacompose.symbolic.rules import CompositionRules, validate_graph
from metacompose.symbolic.selection_search import search_selection


@dataclass(frozen=True)
class Candidate:
    """One module a slot may hold, with the router's score for it."""

    module: str
    in_space: str
    out_space: str
    params: int
    score: float


@dataclass(frozen=True)
class Selection:
    """``status``: ``"optimal"``, ``"infeasible"`` (``violated`` names the rules in the unsat core)
    or ``"unknown"`` (timeout). ``choice`` maps slot -> candidate index."""

    status: str
    choice: dict[str, int]
    score: float
    violated: tuple[str, ...] = ()
    engine: str = "z3"


def selection_graph(
    slots: Mapping[str, Sequence[Candidate]],
    slot_edges: Sequence[tuple[str, str]],
    choice: Mapping[str, int],
) -> nx.DiGraph:
    """The module graph a choice denotes (node = slot), in the form :func:`validate_graph` takes."""
    g = nx.DiGraph()
    for s, k in choice.items():
        c = slots[s][k]
        g.add_node(
            s, slot=s, module=c.module, in_space=c.in_space, out_space=c.out_space, params=c.params
        )
    g.add_edges_from(slot_edges)
    return g


def dominated(cands: Sequence[Candidate], rules: CompositionRules) -> set[int]:
    """Indices that can be dropped without changing the optimum: a candidate whose module no rule
    names is dominated by another such candidate with the same spaces, a score at least as high
    and (with a budget) no more parameters (ties broken by index)."""
    named = {m for g in rules.mutually_exclusive for m in g}
    for sr in rules.slots.values():
        named |= (
            set(sr.required) | set(sr.forbidden) | {m for g in sr.mutually_exclusive for m in g}
        )
    budget = rules.param_budget is not None
    out = set()
    for k, c in enumerate(cands):
        if c.module in named:
            continue
        for i, d in enumerate(cands):
            if (
                i == k
                or d.module in named
                or (d.in_space, d.out_space) != (c.in_space, c.out_space)
            ):
                continue
            if d.score >= c.score and (not budget or d.params <= c.params):
                strict = d.score > c.score or (budget and d.params < c.params) or i < k
                if strict:
                    out.add(k)
                    break
    return out


def best_valid_selection(
    slots: Mapping[str, Sequence[Candidate]],
    slot_edges: Sequence[tuple[str, str]],
    rules: CompositionRules,
    *,
    engine: str = "auto",
    timeout_ms: int = 10000,
    z3_first_ms: int = 1000,
) -> Selection:
    """Maximise the total score over one candidate per slot, subject to ``rules``.

    Args:
        engine: ``"z3"`` (z3 ``Optimize``, engine ``symba``, after dropping dominated
            candidates, see :func:`dominated`), ``"search"`` (exact branch and bound,
            :func:`~metacompose.symbolic.selection_search.search_selection`), or ``"auto"``: z3 for
            ``z3_first_ms``, then the search if z3 has not finished.
        timeout_ms: overall budget; on expiry ``status`` is ``"unknown"``.

    The chosen graph is re-validated with :func:`validate_graph` (every rule proved by z3) before
    it is returned; ``Selection.engine`` says which engine produced it.
    """
    if engine not in ("auto", "z3", "search"):
        raise ValueError(f"unknown selection engine {engine!r}")
    sel = None
    if engine in ("auto", "z3"):
        sel = _z3_selection(
            slots, slot_edges, rules, z3_first_ms if engine == "auto" else timeout_ms
        )
    if engine == "search" or (engine == "auto" and sel.status == "unknown"):
        status, choice, score = search_selection(
            slots, slot_edges, rules, time_budget_s=timeout_ms / 1000
        )
        sel = Selection(status, choice, score, engine="search")
    if sel.status == "optimal":
        check = validate_graph(selection_graph(slots, slot_edges, sel.choice), rules)
        if not check.ok:  # pragma: no cover - would be a bug in an engine
            raise RuntimeError(
                f"selection engine {sel.engine} returned an invalid graph: {check.message()}"
            )
    return sel


def _z3_selection(slots, slot_edges, rules, timeout_ms: int) -> Selection:
    opt = z3.Optimize()
    opt.set("timeout", timeout_ms)
    opt.set("optsmt_engine", "symba")  # the default engine times out on 16x32 with a budget
    # One integer choice per slot; per-slot score and parameter variables keep the objective a
    # plain sum (an If-sum over 512 Booleans makes the optimiser time out).
    choice_var = {s: z3.Int(f"choice[{s}]") for s in slots}
    x = {s: [choice_var[s] == k for k in range(len(c))] for s, c in slots.items()}
    score = {s: z3.Real(f"score[{s}]") for s in slots}
    params = {s: z3.Int(f"params[{s}]") for s in slots}
    for s, cands in slots.items():
        opt.add(choice_var[s] >= 0, choice_var[s] < len(cands))
        opt.add(*[choice_var[s] != k for k in sorted(dominated(cands, rules))])
        for v, c in zip(x[s], cands):
            opt.add(
                z3.Implies(
                    v,
                    z3.And(
                        score[s] == z3_rational(Fraction(float(c.score))),
                        params[s] == int(c.params),
                    ),
                )
            )
    tracked = _rule_constraints(slots, slot_edges, rules, x, params)
    for i, (_, cons) in enumerate(tracked):
        opt.assert_and_track(cons, z3.Bool(f"rule{i}"))
    objective = z3.Sum(
        [
            z3.If(v, z3_rational(Fraction(float(c.score))), 0)
            for s in slots
            for v, c in zip(x[s], slots[s])
        ]
    )
    opt.maximize(objective)
    res = opt.check()
    if res == z3.unsat:
        core = {str(c) for c in opt.unsat_core()}
        names = tuple(n for i, (n, _) in enumerate(tracked) if f"rule{i}" in core)
        return Selection("infeasible", {}, float("-inf"), names)
    if res != z3.sat:
        return Selection("unknown", {}, float("-inf"), (opt.reason_unknown(),))
    model = opt.model()
    choice = {s: model.eval(choice_var[s], model_completion=True).as_long() for s in slots}
    return Selection("optimal", choice, sum(slots[s][k].score for s, k in choice.items()))


def _rule_constraints(slots, slot_edges, rules, x, params) -> list[tuple[str, z3.BoolRef]]:
    """Each rule of ``rules`` as a named z3 constraint over the choice literals ``x[slot][k]`` and
    the per-slot parameter counts ``params[slot]`` (named so an unsat core can cite them)."""
    tracked: list[tuple[str, z3.BoolRef]] = []
    if rules.interface_compatibility:
        for a, b in slot_edges:
            cons = [
                z3.Implies(
                    x[a][k],
                    z3.Or(
                        [x[b][m] for m, cb in enumerate(slots[b]) if cb.in_space == ca.out_space]
                        or [False]
                    ),
                )
                for k, ca in enumerate(slots[a])
            ]
            tracked.append((f"interface_compatibility[{a}->{b}]", z3.And(cons)))
    g = nx.DiGraph(list(slot_edges))
    g.add_nodes_from(slots)
    if rules.acyclic and not nx.is_directed_acyclic_graph(g):
        tracked.append(("acyclic", z3.BoolVal(False)))
    if rules.max_depth is not None and nx.is_directed_acyclic_graph(g):
        depth = nx.dag_longest_path_length(g) + 1 if g.number_of_nodes() else 0
        tracked.append((f"max_depth<={rules.max_depth}", z3.BoolVal(depth <= rules.max_depth)))
    if rules.param_budget is not None:
        total = z3.Sum(list(params.values()))
        tracked.append((f"param_budget<={rules.param_budget}", total <= rules.param_budget))

    def present(m: str, ss) -> z3.BoolRef:
        return z3.Or([v for s in ss for v, c in zip(x[s], slots[s]) if c.module == m] or [False])

    for i, grp in enumerate(rules.mutually_exclusive):
        tracked.append(
            (
                f"mutually_exclusive[{i}]={list(grp)}",
                z3.Sum([z3.If(present(m, slots), 1, 0) for m in grp]) <= 1,
            )
        )
    for s, sr in rules.slots.items():
        if s not in slots:
            continue
        for m in sr.required:
            tracked.append((f"slots.{s}.required={m}", present(m, [s])))
        for m in sr.forbidden:
            tracked.append((f"slots.{s}.forbidden={m}", z3.Not(present(m, [s]))))
        for i, grp in enumerate(sr.mutually_exclusive):
            tracked.append(
                (
                    f"slots.{s}.mutually_exclusive[{i}]={list(grp)}",
                    z3.Sum([z3.If(present(m, [s]), 1, 0) for m in grp]) <= 1,
                )
            )
    return tracked


def brute_force_selection(
    slots: Mapping[str, Sequence[Candidate]],
    slot_edges: Sequence[tuple[str, str]],
    rules: CompositionRules,
) -> Selection:
    """Reference: enumerate every assignment, keep the best one :func:`validate_graph` accepts."""
    names = list(slots)
    best: Selection = Selection("infeasible", {}, float("-inf"))
    for ks in itertools.product(*[range(len(slots[s])) for s in names]):
        choice = dict(zip(names, ks))
        score = sum(slots[s][k].score for s, k in choice.items())
        if score <= best.score:
            continue
        if validate_graph(selection_graph(slots, slot_edges, choice), rules).ok:
            best = Selection("optimal", choice, score)
    return best
