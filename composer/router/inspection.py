"""What a learner composes per task: explicit graphs with routing, modulation and adaptation stats.

Works for a ``RoutedMetaLearner`` (one graph per task, from hard routing) and for a plain
``MetaLearner`` (one graph; no routing fields; inner-loop weight change averaged over the tasks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from metacompose.algorithms.learner import Learner, ParameterAdapter, candidate_slots
from metacompose.graph import ModuleGraph
from metacompose.progress import track
from metacompose.router.learner import RoutedMetaLearner
from metacompose.router.pool import ModulePool
from metacompose.tasks.base import TaskBatch, TaskFamily, derive_seed, factors_of, subsets_of

INSPECT_FORMAT = "metacompose.inspect/1"


@dataclass
class TaskGraph:
    """One inspected task: the explicit graph, its adapted weights and a JSON-ready report."""

    graph: ModuleGraph
    weights: dict[str, torch.Tensor]
    report: dict[str, Any]
    choice: dict[str, int] = field(default_factory=dict)


def sample_tasks(family: TaskFamily, n: int, *, shots: int, query: int, seed: int) -> TaskBatch:
    """Meta-test tasks to inspect; all (f, g) combinations when the family has subsets."""
    g = torch.Generator().manual_seed(derive_seed(seed, "test", "inspect"))
    kw = {"subset": "all"} if "all" in subsets_of(family) else {}
    return family.sample(n, shots=shots, query=query, generator=g, split="test", **kw)


def task_info(family: TaskFamily, batch: TaskBatch, t: int) -> dict[str, Any]:
    """Ground truth of task ``t`` as JSON values; categorical factors by name."""
    names = factors_of(family)
    out: dict[str, Any] = {}
    for k, v in batch.info.items():
        val = v[t].item()
        out[k] = names[k][int(val)] if k in names else val
    return out


def _detach(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in params.items()}


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum((x.double() ** 2).sum() for x in tensors))) if tensors else 0.0


def inspect_routed(
    learner: RoutedMetaLearner, family: TaskFamily, batch: TaskBatch, *, steps: int | None = None
) -> list[TaskGraph]:
    """Hard-route, adapt (``steps``: default ``eval_inner_steps``) and export every task's graph."""
    pool: ModulePool = learner.graph
    steps = learner.eval_inner_steps if steps is None else steps
    with torch.no_grad():
        out, decision = learner.eval_route(batch)
        before, after, frozen = learner.adapt_routed(
            batch, out, decision, steps=steps, first_order=True
        )
    before, after, frozen = (_detach(d) for d in (before, after, frozen))
    mods_all = _detach(out.modulations)
    probs = {s: torch.softmax(lg.detach(), dim=-1) for s, lg in out.logits.items()}
    routing = learner.eval_routing.label
    results = []
    for t in track(range(batch.num_tasks), desc="inspect: export graphs", unit="task"):
        choice = {s: int(c[t]) for s, c in decision.choice.items()}
        params = {**frozen, **{k: v[t] for k, v in after.items()}}
        graph, weights = pool.export_graph(choice, params)
        nodes = []
        for slot in pool.slot_names:
            c = choice.get(slot, 0)
            module = graph.node(slot)
            own = (f"{slot}.{c}.", f"mod.{slot}.{c}.", f"mod.{slot}.*.")
            mods = [v[t] for k, v in mods_all.items() if k.startswith(own[1:])]
            changed = [after[k][t] - before[k][t] for k in after if k.startswith(own)]
            node = {
                "name": slot,
                "module": f"{slot}[{c}]",
                "candidate": c,
                "candidates": pool.num_candidates[slot],
                "type": type(module).__name__,
                "in_space": module.in_space.to_json(),
                "out_space": module.out_space.to_json(),
                "num_parameters": module.num_parameters(),
                "modulation_norm": _norm(mods),
                "weight_change_norm": _norm(changed),
            }
            if slot in probs:
                node["routing_prob"] = float(probs[slot][t, c])
                node["routing_probs"] = [float(p) for p in probs[slot][t]]
            nodes.append(node)
        report = {
            "format": INSPECT_FORMAT,
            "task": task_info(family, batch, t),
            "routing": routing,
            "inner_steps": steps,
            "nodes": nodes,
            "edges": _edges(graph),
            "graph": graph.to_json_dict(),
        }
        results.append(TaskGraph(graph=graph, weights=weights, report=report, choice=choice))
    return results


def inspect_plain(
    learner: ParameterAdapter, batch: TaskBatch, *, steps: int | None = None
) -> TaskGraph:
    """The single graph of a plain ``MetaLearner``; weight change = mean over tasks of the norm."""
    graph: ModuleGraph = learner.graph
    steps = learner.eval_inner_steps if steps is None else steps
    before, _ = learner.split_params()
    with torch.no_grad():
        fast, _ = learner.adapt(batch.support_x, batch.support_y, steps=steps, first_order=True)
    fast, before = _detach(fast), _detach(before)
    nodes = []
    for name in graph.node_names:
        module = graph.node(name)
        keys = [k for k in fast if k.startswith(f"{name}.")]
        per_task = [_norm([fast[k][t] - before[k] for k in keys]) for t in range(batch.num_tasks)]
        nodes.append(
            {
                "name": name,
                "module": name,
                "type": type(module).__name__,
                "in_space": module.in_space.to_json(),
                "out_space": module.out_space.to_json(),
                "num_parameters": module.num_parameters(),
                "weight_change_norm": sum(per_task) / len(per_task),
            }
        )
    report = {
        "format": INSPECT_FORMAT,
        "task": None,
        "routing": None,
        "inner_steps": steps,
        "tasks_averaged": batch.num_tasks,
        "nodes": nodes,
        "edges": _edges(graph),
        "graph": graph.to_json_dict(),
    }
    return TaskGraph(graph=graph, weights=dict(graph.named_parameters()), report=report)


# the graph report's "routing" of an exported task, by what chose its candidates
ROUTED_BY = {"data": "hard-from-data", "descriptor": "hard-by-descriptor"}


def inspect_exported(learner: Learner, family: TaskFamily, batch: TaskBatch) -> list[TaskGraph]:
    """Every task's graph as the learner exports it (:meth:`Learner.export_tasks`), for a learner
    that routes from data without a module pool (``algo.name: annealed_sum``)."""
    exports = learner.export_tasks(batch)
    slots = candidate_slots(learner)
    shared = slots is not None and slots.shared  # every slot chooses from one bank
    results = []
    for t, ex in enumerate(track(exports, desc="inspect: export graphs", unit="task")):
        nodes = []
        labels = {s: f"{'bank' if shared else s}[{c}]" for s, c in ex.choice.items()}
        for name in ex.graph.node_names:
            module = ex.graph.node(name)
            keys = [k for k in ex.adapted if k.startswith(f"{name}.")]
            node = {
                "name": name,
                "module": labels.get(name, name),
                "type": type(module).__name__,
                "in_space": module.in_space.to_json(),
                "out_space": module.out_space.to_json(),
                "num_parameters": module.num_parameters(),
                "weight_change_norm": _norm([ex.adapted[k] - ex.meta[k] for k in keys]),
            }
            if name in ex.choice:
                node |= {"candidate": ex.choice[name], "candidates": slots.num_candidates[name]}
            nodes.append(node)
        report = {
            "format": INSPECT_FORMAT,
            "task": task_info(family, batch, t),
            "routing": ROUTED_BY[ex.routed_by or "data"] if ex.choice else "uniform",
            "inner_steps": learner.eval_inner_steps,
            "nodes": nodes,
            "edges": _edges(ex.graph),
            "graph": ex.graph.to_json_dict(),
        }
        weights = {k: v.detach() for k, v in ex.adapted.items()}
        results.append(TaskGraph(ex.graph, weights, report, choice=dict(ex.choice)))
    return results


def usage_table(
    results: list[TaskGraph], family: TaskFamily, batch: TaskBatch, *, shared: bool = False
) -> list[dict[str, Any]]:
    """Rows ``slot, candidate, tasks, fraction`` plus a count column per true primitive value;
    ``shared`` (every slot chooses from one bank): one row per candidate, slot ``bank``, counting
    the tasks that chose it in any slot."""
    factors = factors_of(family)
    rows = []
    n = len(results)
    slots = list(results[0].choice) if results else []
    for slot in slots[:1] if shared else slots:
        cands = next(nd["candidates"] for nd in results[0].report["nodes"] if nd["name"] == slot)
        among = slots if shared else [slot]
        for c in range(cands):
            picked = [t for t, r in enumerate(results) if c in {r.choice[s] for s in among}]
            row: dict[str, Any] = {
                "slot": "bank" if shared else slot,
                "candidate": c,
                "tasks": len(picked),
                "fraction": round(len(picked) / n, 4),
            }
            for f, names in factors.items():
                for i, nm in enumerate(names):
                    row[f"{f}={nm}"] = sum(int(batch.info[f][t]) == i for t in picked)
            rows.append(row)
    return rows


def _edges(graph: ModuleGraph) -> list[dict[str, Any]]:
    return [
        {"src": u, "dst": v, "space": d["space"].to_json()}
        for u, v, d in sorted(graph.graph.edges(data=True))
    ]
