"""Composition rules on module graphs, checked in z3; violations are named from unsat cores.

A graph is a ``networkx.DiGraph`` whose nodes carry ``slot``, ``module`` (name), ``in_space`` and
``out_space`` (strings such as ``"vec[40]"``) and ``params`` (an int); edges are data flow. Each rule
is one proof obligation in a fresh solver together with the graph's facts; when the conjunction is
unsat the rule is violated, and the unsat core names the graph facts (nodes, edges) that break it.

Rules YAML::

    interface_compatibility: true     # every edge: out_space of source == in_space of target
    acyclic: true
    max_depth: 6                      # nodes on the longest path
    param_budget: 100000
    mutually_exclusive: [[attn, conv]] # at most one of each group anywhere in the graph
    slots:
      body: {required: [mlp], forbidden: [conv], mutually_exclusive: [[mlp, resmlp]]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import z3

DEFAULT_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class SlotRules:
    """Per-slot rules: ``required`` modules must all appear in the slot, ``forbidden`` none,
    and at most one module of each ``mutually_exclusive`` group."""

    required: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    mutually_exclusive: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class CompositionRules:
    interface_compatibility: bool = True
    acyclic: bool = True
    max_depth: int | None = None
    param_budget: int | None = None
    mutually_exclusive: tuple[tuple[str, ...], ...] = ()
    slots: dict[str, SlotRules] = field(default_factory=dict)
    source: str = field(default="<python>", compare=False)


@dataclass(frozen=True)
class RuleViolation:
    """A violated rule and the graph facts (z3 unsat core) that contradict it."""

    rule: str
    culprits: tuple[str, ...]


@dataclass(frozen=True)
class RulesCheck:
    violations: tuple[RuleViolation, ...]
    unknown: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations and not self.unknown

    def message(self) -> str:
        """One line naming every violated rule and its culprits."""
        parts = [f"{v.rule} (because of {', '.join(v.culprits)})" for v in self.violations]
        parts += [f"{u} (solver undecided)" for u in self.unknown]
        return "graph violates composition rules: " + "; ".join(parts) if parts else "ok"


class RulesError(ValueError):
    """An invalid rules file; the message names the file and the key."""


def load_rules(path: str | Path) -> CompositionRules:
    """Read and validate a rules YAML (see module docstring)."""
    from metacompose.symbolic.spec_yaml import read_yaml

    path = Path(path)
    return rules_from_dict(read_yaml(path, "rules", RulesError), source=str(path))


def rules_from_dict(data: Any, *, source: str = "<dict>") -> CompositionRules:
    def fail(key: str, msg: str):
        shown = key if len(key) <= 80 else key[:77] + "..."  # a text file read as rules: one key
        raise RulesError(f"{source}: key '{shown}': {msg}")

    allowed = {
        "interface_compatibility",
        "acyclic",
        "max_depth",
        "param_budget",
        "mutually_exclusive",
        "slots",
    }
    if not isinstance(data, dict):
        fail("<top>", "expected a mapping")
    for k in data:
        if k not in allowed:
            fail(str(k), f"unknown key (allowed: {sorted(allowed)})")
    for k in ("interface_compatibility", "acyclic"):
        if k in data and not isinstance(data[k], bool):
            fail(k, f"expected true or false, got {data[k]!r}")
    for k in ("max_depth", "param_budget"):
        v = data.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            fail(k, f"expected a non-negative integer, got {v!r}")

    def names(v: Any, key: str) -> tuple[str, ...]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            fail(key, f"expected a list of module names, got {v!r}")
        return tuple(v)

    def groups(v: Any, key: str) -> tuple[tuple[str, ...], ...]:
        if not isinstance(v, list):
            fail(key, f"expected a list of name lists, got {v!r}")
        # duplicates inside a group are dropped: [a, a] means "at most one a", i.e. no constraint
        return tuple(tuple(dict.fromkeys(names(g, f"{key}[{i}]"))) for i, g in enumerate(v))

    slots = {}
    raw_slots = data.get("slots", {}) or {}
    if not isinstance(raw_slots, dict):
        fail("slots", "expected a mapping slot -> rules")
    for s, r in raw_slots.items():
        if not isinstance(r, dict):
            fail(f"slots.{s}", "expected a mapping")
        for k in r:
            if k not in ("required", "forbidden", "mutually_exclusive"):
                fail(
                    f"slots.{s}.{k}",
                    "unknown key (allowed: forbidden, mutually_exclusive, required)",
                )
        slots[str(s)] = SlotRules(
            required=names(r.get("required", []), f"slots.{s}.required"),
            forbidden=names(r.get("forbidden", []), f"slots.{s}.forbidden"),
            mutually_exclusive=groups(
                r.get("mutually_exclusive", []), f"slots.{s}.mutually_exclusive"
            ),
        )
    return CompositionRules(
        interface_compatibility=data.get("interface_compatibility", True),
        acyclic=data.get("acyclic", True),
        max_depth=data.get("max_depth"),
        param_budget=data.get("param_budget"),
        mutually_exclusive=groups(data.get("mutually_exclusive", []), "mutually_exclusive"),
        slots=slots,
        source=source,
    )


def _graph_facts(g: nx.DiGraph) -> tuple[list, dict]:
    """Named facts describing the concrete graph: node attributes (strings interned as integer
    ids, so no string theory is loaded into z3) and parameter counts."""
    facts, var = [], {}
    ids: dict[str, int] = {}
    var["ids"] = ids
    for v, a in g.nodes(data=True):
        for attr in ("in_space", "out_space", "module", "slot"):
            z = z3.Int(f"{attr}[{v}]")
            var[(attr, v)] = z
            val = str(a.get(attr))
            facts.append((f"node {v} {attr}={val}", z == ids.setdefault(val, len(ids))))
        p = z3.Int(f"params[{v}]")
        var[("params", v)] = p
        facts.append((f"node {v} params={int(a.get('params', 0))}", p == int(a.get("params", 0))))
    return facts, var


@dataclass(frozen=True)
class _Rule:
    name: str
    plain: list  # constraints asserted as-is
    tracked: list = field(default_factory=list)  # (label, constraint) named in unsat cores


def _rules_for(g: nx.DiGraph, rules: CompositionRules, var: dict) -> list[_Rule]:
    out = []
    if rules.interface_compatibility:
        for u, w in g.edges():
            out.append(
                _Rule(
                    f"interface_compatibility[{u}->{w}]",
                    [var[("out_space", u)] == var[("in_space", w)]],
                )
            )
    if rules.acyclic:
        rank = {v: z3.Int(f"rank[{v}]") for v in g.nodes}
        out.append(
            _Rule("acyclic", [], [(f"edge {u}->{w}", rank[u] < rank[w]) for u, w in g.edges()])
        )
    if rules.max_depth is not None:
        d = {v: z3.Int(f"depth[{v}]") for v in g.nodes}
        plain = [z3.And(d[v] >= 1, d[v] <= rules.max_depth) for v in g.nodes]
        tracked = [(f"edge {u}->{w}", d[w] >= d[u] + 1) for u, w in g.edges()]
        out.append(_Rule(f"max_depth<={rules.max_depth}", plain, tracked))
    if rules.param_budget is not None:
        total = z3.Sum([var[("params", v)] for v in g.nodes] or [z3.IntVal(0)])
        out.append(_Rule(f"param_budget<={rules.param_budget}", [total <= rules.param_budget]))
    for i, grp in enumerate(rules.mutually_exclusive):
        uses = [z3.If(_present(var, list(g.nodes), m), 1, 0) for m in grp]
        out.append(_Rule(f"mutually_exclusive[{i}]={list(grp)}", [z3.Sum(uses) <= 1]))
    for s, sr in rules.slots.items():
        nodes = [v for v in g.nodes if str(g.nodes[v].get("slot")) == s]
        for m in sr.required:
            out.append(_Rule(f"slots.{s}.required={m}", [_present(var, nodes, m)]))
        for m in sr.forbidden:
            out.append(_Rule(f"slots.{s}.forbidden={m}", [z3.Not(_present(var, nodes, m))]))
        for i, grp in enumerate(sr.mutually_exclusive):
            uses = [z3.If(_present(var, nodes, m), 1, 0) for m in grp]
            out.append(_Rule(f"slots.{s}.mutually_exclusive[{i}]={list(grp)}", [z3.Sum(uses) <= 1]))
    return out


def _present(var: dict, nodes: list, module: str) -> z3.BoolRef:
    mid = var["ids"].get(module, -1)  # a module absent from the graph matches nothing
    return z3.Or([var[("module", v)] == mid for v in nodes] or [z3.BoolVal(False)])


def validate_graph(
    g: nx.DiGraph, rules: CompositionRules, *, timeout_ms: int = DEFAULT_TIMEOUT_MS
) -> RulesCheck:
    """Check every rule on graph ``g``; each rule is one fresh-solver obligation.

    Returns:
        a :class:`RulesCheck` listing each violated rule with its unsat core (the node attribute
        facts or edges that contradict it) and any rule z3 could not decide.
    """
    facts, var = _graph_facts(g)
    violations, unknown = [], []
    for rule in _rules_for(g, rules, var):
        s = z3.Solver()
        s.set("timeout", timeout_ms)
        s.set("unsat_core", True)
        labels = {}
        for i, (label, f) in enumerate([*facts, *rule.tracked]):
            labels[f"t{i}"] = label
            s.assert_and_track(f, z3.Bool(f"t{i}"))
        s.add(*rule.plain)
        r = s.check()
        if r == z3.unsat:
            core = tuple(sorted(labels[str(c)] for c in s.unsat_core()))
            violations.append(RuleViolation(rule.name, core))
        elif r == z3.unknown:
            unknown.append(rule.name)
    return RulesCheck(tuple(violations), tuple(unknown))
