"""The reviewer's verification run: adapt to meta-test tasks, certify each, JSON + Markdown."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from metacompose.algorithms.learner import Learner
from metacompose.progress import track
from metacompose.symbolic import CertificationReport, ClaimResult, StabilitySpec, Unknown
from metacompose.tasks.base import TaskFamily, derive_seed, factors_of
from metacompose.verify.adaptation import adapt_tasks, certify_adaptation

REPORT_FORMAT = "metacompose.verify/1"
EXIT_CODES = {"proved": 0, "violated": 1, "unknown": 3}


@dataclass
class VerifyReport:
    """Per-task certification reports of one ``metacompose verify`` run."""

    checkpoint: str
    spec: str
    tier: str
    seed: int
    inner_steps: int
    tasks: list[dict[str, Any]] = field(default_factory=list)
    reports: list[CertificationReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        statuses = {r.status for r in self.reports}
        for s in ("violated", "unknown"):
            if s in statuses:
                return s
        return "proved"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def counts(self) -> dict[str, int]:
        out = {"proved": 0, "violated": 0, "unknown": 0, "estimate": 0}
        for rep in self.reports:
            for r in rep.results:
                out[r.status] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "checkpoint": self.checkpoint,
            "spec": self.spec,
            "tier": self.tier,
            "seed": self.seed,
            "inner_steps": self.inner_steps,
            "status": self.status,
            "claims": self.counts(),
            "seconds": self.seconds,
            "tasks": [{**info, **rep.to_json()} for info, rep in zip(self.tasks, self.reports)],
        }

    def to_markdown(self) -> str:
        c = self.counts()
        lines = [
            "# Verification report",
            "",
            f"- checkpoint: `{self.checkpoint}`",
            f"- spec: `{self.spec}`; tier: `{self.tier}`; seed {self.seed}; "
            f"{self.inner_steps} inner steps; {len(self.reports)} tasks",
            f"- **overall: {self.status}** (claims: {c['proved']} proved, {c['violated']} violated, "
            f"{c['unknown']} unknown, {c['estimate']} estimates); {self.seconds:.2f} s",
            "",
            "| task | status | proved | violated | unknown | seconds |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for info, rep in zip(self.tasks, self.reports):
            n = {s: sum(r.status == s for r in rep.results) for s in EXIT_CODES}
            lines.append(
                f"| {info['task']} | {rep.status} | {n['proved']} | {n['violated']} | "
                f"{n['unknown']} | {rep.seconds:.3f} |"
            )
        lines += [
            "",
            "## Claims",
            "",
            "| task | claim | status | limit | bound / observed | margin | tier | detail |",
            "|---:|---|---|---:|---:|---:|---|---|",
        ]
        for info, rep in zip(self.tasks, self.reports):
            for r in rep.results:
                j = r.to_json()
                value = j.get("bound", j.get("observed", j.get("value")))
                detail = j.get("reason") or j.get("note") or j.get("method") or ""
                if r.status == "violated" and j.get("x") is not None:
                    detail += f"; x = {_short(j['x'])}"
                lines.append(
                    f"| {info['task']} | `{r.claim}` | {r.status} | {_num(r.limit)} | "
                    f"{_num(value)} | {_num(r.margin)} | {r.tier} | {detail.replace('|', '/')} |"
                )
        return "\n".join(lines) + "\n"


def _num(v) -> str:
    return "" if v is None else f"{v:.6g}"


def _short(xs: list) -> str:
    body = ", ".join(f"{float(v):.6g}" for v in xs[:6])
    return f"[{body}{', ...' if len(xs) > 6 else ''}]"


def verify_learner(
    learner: Learner,
    family: TaskFamily,
    spec: StabilitySpec,
    *,
    n_tasks: int,
    shots: int,
    query: int,
    steps: int,
    tier: str = "fast",
    timeout_s: float = 5.0,
    seed: int = 0,
    checkpoint: str = "",
) -> VerifyReport:
    """Adapt to ``n_tasks`` seeded meta-test tasks and certify each adaptation against ``spec``.

    Linf-ball domains without points are centred on each task's query inputs.
    """
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(derive_seed(seed, "test", "verify"))
    batch = family.sample(n_tasks, shots=shots, query=query, generator=g, split="test")
    out = VerifyReport(
        checkpoint=checkpoint, spec=spec.source, tier=tier, seed=seed, inner_steps=steps
    )
    try:
        adaptations = adapt_tasks(learner, batch, steps=steps)
    except (AttributeError, ValueError) as e:  # e.g. an in-context learner: no weights to compare
        why = f"{type(learner).__name__} exports no per-task weights, nothing to certify ({e})"
        for t in range(n_tasks):
            out.tasks.append({"task": t})
            claim = ClaimResult("all", None, Unknown(why), tier, 0.0)
            out.reports.append(CertificationReport((claim,), 0.0))
        out.seconds = time.perf_counter() - t0
        return out
    for t, a in enumerate(track(adaptations, desc=f"verify ({tier})", unit="task")):
        info: dict[str, Any] = {"task": t}
        for k, v in batch.info.items():
            if (
                isinstance(v, torch.Tensor)
                and v.dim() >= 1
                and v.shape[0] == n_tasks
                and v[t].numel() == 1
            ):
                info[k] = task_value(v[t], factors_of(family).get(k))
        if a.choice:
            info["choice"] = dict(a.choice)
        out.tasks.append(info)
        out.reports.append(
            certify_adaptation(a, spec, tier=tier, timeout_s=timeout_s, seed=seed + t)
        )
    out.seconds = time.perf_counter() - t0
    return out


def task_value(value: torch.Tensor, names: tuple[str, ...] | None) -> Any:
    """One task's ``info`` value for the JSON: a factor's name where the family names its values
    (``"saw"``, as ``inspect`` shows it), else an int or a float as its dtype says."""
    if value.dtype.is_floating_point:
        return float(value)
    if value.dtype == torch.bool:
        return bool(value)
    if names is not None and 0 <= int(value) < len(names):
        return names[int(value)]
    return int(value)
