"""Exact depth-first branch and bound for the best valid selection (z3 Optimize's fallback).

Slots are assigned in topological order, candidates by descending score. A branch is cut when
its score plus an admissible bound on the remaining slots cannot beat the incumbent, when the
parameter budget cannot be met even with the cheapest remaining candidates, or when a rule is
already broken. On a chain of slots the bound is an exact dynamic programme over interfaces
(ignoring budget and mutual exclusion), otherwise the sum of per-slot maxima.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence

import networkx as nx

from metacompose.symbolic.rules import CompositionRules


def search_selection(
    slots: Mapping[str, Sequence],
    slot_edges: Sequence[tuple[str, str]],
    rules: CompositionRules,
    *,
    time_budget_s: float = 60.0,
) -> tuple[str, dict[str, int], float]:
    """Returns ``(status, choice, score)`` with status ``optimal`` / ``infeasible`` / ``unknown``."""
    t0 = time.perf_counter()
    g = nx.DiGraph(list(slot_edges))
    g.add_nodes_from(slots)
    if not nx.is_directed_acyclic_graph(g):
        return (
            ("infeasible", {}, float("-inf")) if rules.acyclic else ("unknown", {}, float("-inf"))
        )
    if rules.max_depth is not None and nx.dag_longest_path_length(g) + 1 > rules.max_depth:
        return "infeasible", {}, float("-inf")
    order = list(nx.topological_sort(g))
    allowed = {s: _allowed(s, slots[s], rules) for s in order}
    preds = {s: list(g.predecessors(s)) for s in order}
    bound = _suffix_bounds(order, g, slots, allowed, rules)
    min_params = [
        sum(min((slots[s][k].params for k in allowed[s]), default=0) for s in order[i:])
        for i in range(len(order) + 1)
    ]
    budget = rules.param_budget
    best = {"score": float("-inf"), "choice": None}
    choice: dict[str, int] = {}
    timed_out = False

    def rec(i: int, score: float, params: int) -> None:
        nonlocal timed_out
        if timed_out or time.perf_counter() - t0 > time_budget_s:
            timed_out = True
            return
        if i == len(order):
            if score > best["score"] and _rules_ok(choice, slots, rules):
                best["score"], best["choice"] = score, dict(choice)
            return
        s = order[i]
        for k in allowed[s]:
            c = slots[s][k]
            if rules.interface_compatibility and any(
                slots[p][choice[p]].out_space != c.in_space for p in preds[s]
            ):
                continue
            if budget is not None and params + c.params + min_params[i + 1] > budget:
                continue
            if score + c.score + bound(i + 1, s, c) <= best["score"]:
                continue
            choice[s] = k
            if _mutex_ok(choice, slots, rules):
                rec(i + 1, score + c.score, params + c.params)
            del choice[s]

    rec(0, 0.0, 0)
    if timed_out:
        return "unknown", best["choice"] or {}, best["score"]
    if best["choice"] is None:
        return "infeasible", {}, float("-inf")
    return "optimal", best["choice"], best["score"]


def _allowed(s: str, cands: Sequence, rules: CompositionRules) -> list[int]:
    sr = rules.slots.get(s)
    ks = [k for k in range(len(cands)) if sr is None or cands[k].module not in sr.forbidden]
    if sr is not None and sr.required:
        if len(set(sr.required)) > 1:
            return []  # one module per slot cannot hold two required modules
        ks = [k for k in ks if cands[k].module == sr.required[0]]
    return sorted(ks, key=lambda k: -cands[k].score)


def _suffix_bounds(order, g, slots, allowed, rules):
    """``bound(i, prev_slot, prev_cand)``: admissible max score of slots ``order[i:]``."""
    chain = all(g.out_degree(s) <= 1 and g.in_degree(s) <= 1 for s in order) and all(
        g.has_edge(a, b) for a, b in itertools.pairwise(order)
    )
    plain = [0.0] * (len(order) + 1)
    for i in range(len(order) - 1, -1, -1):
        plain[i] = plain[i + 1] + max(
            (slots[order[i]][k].score for k in allowed[order[i]]), default=float("-inf")
        )
    if not (chain and rules.interface_compatibility):
        return lambda i, s, c: plain[i]
    # h[i][space] = best score of order[i:] when order[i] must take in_space == space
    h: list[dict[str, float]] = [{} for _ in range(len(order) + 1)]
    for i in range(len(order) - 1, -1, -1):
        s = order[i]
        for k in allowed[s]:
            c = slots[s][k]
            nxt = 0.0 if i == len(order) - 1 else h[i + 1].get(c.out_space, float("-inf"))
            h[i][c.in_space] = max(h[i].get(c.in_space, float("-inf")), c.score + nxt)
    return lambda i, s, c: 0.0 if i == len(order) else h[i].get(c.out_space, float("-inf"))


def _mutex_ok(choice, slots, rules: CompositionRules) -> bool:
    used = {slots[s][k].module for s, k in choice.items()}
    return all(len(used & set(grp)) <= 1 for grp in rules.mutually_exclusive)


def _rules_ok(choice, slots, rules: CompositionRules) -> bool:
    return _mutex_ok(choice, slots, rules)
