"""Pooled ("static") pre-training: one ordinary supervised model over all meta-train tasks' data.

Regression: the graph is trained with MSE on the pooled rows of meta-train tasks (it learns the
population-average function). Classification: the graph's body is trained with a temporary linear
head over every meta-train class (global labels from ``TaskBatch.info["classes"]``); the N-way
head is then reset to zeros, ready to be fine-tuned per task (Chen et al. 2019's "Baseline").
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metacompose.graph import ModuleGraph
from metacompose.progress import progress
from metacompose.tasks.base import TaskFamily, derive_seed


@dataclass
class PretrainResult:
    """How pre-training went: iterations run, wall seconds, and the loss of each iteration."""

    iterations: int
    seconds: float
    losses: list[float]


def pretrain_pooled(
    graph: ModuleGraph,
    family: TaskFamily,
    *,
    iterations: int,
    tasks_per_batch: int = 16,
    shots: int = 10,
    query: int = 10,
    lr: float = 1e-3,
    seed: int = 0,
    n_classes: int | None = None,
    max_seconds: float | None = None,
    device: torch.device | str = "cpu",
) -> PretrainResult:
    """Train ``graph`` in place on pooled meta-train data (``split="train"`` tasks only).

    Args:
        graph: ``body -> head`` graph (``metacompose.models``); for classification its ``head`` is
            zeroed afterwards.
        family: the task family; each iteration pools the support and query examples of
            ``tasks_per_batch`` fresh meta-train tasks.
        iterations: optimizer steps (Adam).
        n_classes: classification only: the number of global classes (labels index
            ``info["classes"]``).
        max_seconds: stop early after this much wall time.
        device: where the graph lives; batches are moved there.

    A progress bar counts the iterations on stderr (see :mod:`metacompose.progress`).
    """
    classify = family.metric == "accuracy"
    if classify and n_classes is None:
        raise ValueError("pretrain_pooled: classification needs n_classes (global class count)")
    body = graph.node("body")
    global_head = nn.Linear(body.out_space.dim, n_classes).to(device) if classify else None
    params = list(graph.parameters()) + (list(global_head.parameters()) if classify else [])
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(derive_seed(seed, "pretrain"))
    losses, start, done = [], time.perf_counter(), 0
    with progress(desc="pretrain", total=iterations, unit="it") as bar:
        for _ in range(iterations):
            b = family.sample(tasks_per_batch, shots=shots, query=query, generator=g, split="train")
            b = b.to(device)
            x = torch.cat([b.support_x, b.query_x], 1).flatten(0, 1)
            y = torch.cat([b.support_y, b.query_y], 1)
            if classify:
                labels = b.info["classes"].gather(1, y).flatten()  # (T*(K+Q),) global class ids
                loss = F.cross_entropy(global_head(body(x)), labels)
            else:
                loss = F.mse_loss(graph(x), y.flatten(0, 1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            done += 1
            bar.update(1)
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                break
    if classify:
        with torch.no_grad():
            for p in graph.node("head").parameters():
                p.zero_()
    return PretrainResult(iterations=done, seconds=time.perf_counter() - start, losses=losses)
