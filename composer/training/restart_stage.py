"""Block restarts as the last stage of a run: ``restart:`` in a run config (``algo.name:
annealed_sum``, the sum or the chain, two banks, routed from data).

After the last meta-iteration ``train`` saves ``last.ckpt`` as always, then runs the phases of
``restart.order`` (:mod:`metacompose.training.block_restarts`) on it, in one process on the CPU,
saving ``last.ckpt`` after each phase with a record of the phases done (the checkpoint key
:data:`RECORD`). A phase depends only on ``restart.seed``, its index and the banks it starts from,
so a run stopped during a phase (SIGINT/SIGTERM: the phase's work is dropped, exit 130/143) and
resumed with ``--resume`` runs that phase again and ends bit-identical to a run never stopped, and
to ``scripts/restart_banks.py`` on the checkpoint the training phase saved.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from metacompose.config import ConfigError
from metacompose.config.schema import RestartConfig as RestartPlan
from metacompose.progress import say
from metacompose.tasks.base import TaskFamily
from metacompose.training.block_restarts import (
    PhaseStopped,
    fixed_tasks,
    run_phase,
    run_polish,
    why_not_restartable,
)
from metacompose.training.checkpoint_io import atomic_save, safe_load
from metacompose.training.distil_phase import run_distil
from metacompose.training.interrupted import TrainingInterrupted
from metacompose.training.resume import RESTART_RECORD as RECORD


class RestartsStopped(Exception):
    """SIGINT/SIGTERM during phase ``phase`` (1-based); the phases before it are saved."""

    def __init__(self, *, signum: int, phase: int) -> None:
        self.signum, self.phase = signum, phase
        super().__init__(f"{signal.Signals(signum).name} during block-restart phase {phase}")


def phases_done(checkpoint: dict[str, Any], plan: RestartPlan) -> int:
    """How many of ``plan``'s phases ``checkpoint`` records as done (0: none, or slots that are not
    the start of ``plan.order``). ``--resume`` has checked that the run's config is unchanged.

    Raises:
        ConfigError: the record lists phases that are not records of a phase.
    """
    record = checkpoint.get(RECORD)
    phases = record.get("phases") if isinstance(record, dict) else None
    if not isinstance(phases, list):
        return 0
    if not all(isinstance(ph, dict) for ph in phases):
        raise ConfigError("its block-restart record is damaged: its phases are not records")
    slots = "".join(str(ph.get("slot", "?")) for ph in phases)
    return len(slots) if plan.order.startswith(slots) else 0


def check_restartable(learner, plan: RestartPlan, *, processes: int | None) -> None:
    """Raises ``ConfigError`` naming ``restart.order`` when ``plan`` has phases that ``learner``
    cannot run, or the run may have several processes (the stage runs in one; ``processes``:
    ``None`` when the trainer section leaves the count to the machine)."""
    why = why_not_restartable(learner) if plan.order else None
    if plan.order and processes != 1:
        many = f"not {processes}" if processes else "and trainer.devices=auto/-1 may start several"
        why = f"they run in one process, {many} (set trainer.devices=1, trainer.num_nodes=1)"
    if why:
        raise ConfigError(f"restart.order={plan.order}: block restarts cannot run: {why}")


@contextlib.contextmanager
def stop_on_signal() -> Iterator[Callable[[], int]]:
    """A callable that returns the first SIGINT/SIGTERM received (0: none) while the block runs; a
    second signal ends the process at once, the way the signal normally does."""
    got: list[int] = []

    def handle(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if got:
            with contextlib.suppress(OSError):
                os.write(
                    sys.stderr.fileno(), f"metacompose: second {name}: stopping now\n".encode()
                )
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        got.append(signum)
        said = (f"\nmetacompose: {name}: stopping; the block-restart phases saved so far stay and "
                "--resume runs the rest (send it again to stop now)\n")  # fmt: skip
        with contextlib.suppress(OSError):  # os.write: print() here may re-enter stderr
            os.write(sys.stderr.fileno(), said.encode())

    main = threading.current_thread() is threading.main_thread()
    previous = (
        {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    )
    try:
        yield lambda: got[0] if got else 0
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def continued(record: Any, plan: RestartPlan, *,
              names: Callable[[str], str] = "restart.{}".format) -> tuple[RestartPlan, int]:  # fmt: skip
    """``plan``'s phases after the ``record``'s done ones: the plan whose order is the done slots
    and then ``plan.order`` (the settings of a kind of phase ``plan`` does not run: the record's),
    and how many are done.

    Raises:
        ConfigError: the record is damaged, records fewer phases than it planned or a distil
            phase older than ``distil_tasks``; or ``plan`` draws its fixed tasks (``seed``,
            ``fit_tasks``, ``agree_tasks``) or runs a kind of phase the record has (restarts and
            distil: ``restarts``, ``steps``, ``anneal``, ``within``; polish: ``polish_steps``,
            ``polish_lr``; distil: ``distil_tasks``) otherwise than the record says (keys named by
            ``names``).
    """
    phases = record.get("phases") if isinstance(record, dict) else None
    before = record.get("plan") if isinstance(record, dict) else None
    if (
        not isinstance(before, dict)
        or not isinstance(phases, list)
        or not all(isinstance(ph, dict) for ph in phases)
    ):
        raise ConfigError("its block-restart record is damaged: no phase can be added to it")
    slots = "".join(str(ph.get("slot", "?")) for ph in phases)
    planned = str(before.get("order", slots))
    if len(slots) < len(planned):
        raise ConfigError(
            f"its block restarts stopped after {len(slots)} of the {len(planned)} phases planned "
            f"({planned}): finish them first (train --resume RUN)"
        )
    if "d" in slots and "distil_tasks" not in before:
        raise ConfigError(
            "its distil phase predates restart.distil_tasks (it kept the lowest routed query MSE "
            "on the agree tasks): no phase can be added to it; add them to the checkpoint before it"
        )
    kinds = ((("seed", "fit_tasks", "agree_tasks"), True, True),
             (("restarts", "steps", "anneal", "within"), bool({"f", "g", "d"} & set(plan.order)),
              bool({"f", "g", "d"} & set(slots))),
             (("polish_steps", "polish_lr"), "p" in plan.order, "p" in slots),
             (("distil_tasks",), "d" in plan.order, "d" in slots))  # fmt: skip
    kept = {}
    for keys, runs, ran in kinds:
        for key in (k for k in keys if k in before):
            if runs and ran and before[key] != getattr(plan, key):
                raise ConfigError(
                    f"{names(key)} {getattr(plan, key)}: the checkpoint's block restarts used "
                    f"{before[key]}; phases added to them must too"
                )
            if not runs:
                kept[key] = before[key]
    return replace(plan, order=slots + plan.order, **kept), len(slots)


def restart_checkpoint(source: Path, out: Path, *, learner, family: TaskFamily, plan: RestartPlan,
                       lr: float, batch: int, shots: int, query: int, in_place: bool,
                       stop: Callable[[], int] | None = None) -> dict[str, Any]:  # fmt: skip
    """Run the phases of ``plan`` on the kept replica of ``source`` and write the result to ``out``.

    ``in_place`` (a run's own ``last.ckpt``, ``out`` = ``source``): the phases ``source`` records
    as done are skipped and ``out`` is saved after each phase. Otherwise every phase of ``plan``
    runs and ``out`` is written once, at the end; on a ``source`` already restarted they follow
    its recorded phases (:func:`continued`), as if its ``restart.order`` had asked for them too.

    ``learner``: built from the run's config (its weights are loaded from ``source``, on the CPU).
    Every other replica, the optimizer state and the loops of ``source`` are kept as they are.
    Returns the record written (``"phases"``: each phase's fits, agreement and kept replica).

    Raises:
        RestartsStopped: ``stop()`` returned a signal during a phase (the phases before it are in
            ``out`` when ``in_place``; nothing is written otherwise).
    """
    ckpt = safe_load(source)
    state = ckpt["state_dict"]
    learner = learner.cpu().float()  # as the script builds it, whatever the run's precision
    learner.load_state_dict({k.removeprefix("learner."): v for k, v in state.items()})
    learner.eval()
    kept, done = learner.kept, phases_done(ckpt, plan) if in_place else 0
    if not in_place and ckpt.get(RECORD) is not None:
        plan, done = continued(ckpt[RECORD], plan)
        ckpt[RECORD] = {**ckpt[RECORD], "plan": asdict(plan)}
    record = ckpt[RECORD] if done else {"plan": asdict(plan), "kept": kept, "phases": []}
    fixed = fixed_tasks(family, seed=plan.seed, shots=shots, query=query,
                        fit_tasks=plan.fit_tasks, agree_tasks=plan.agree_tasks)  # fmt: skip
    f, g = learner.f_banks[kept], learner.g_banks[kept]
    for k in range(done, len(plan.order)):
        try:
            tasks = {"batch": batch, "shots": shots, "query": query, "fixed": fixed, "stop": stop}
            amplitude = float(state["learner.amplitude"][kept])
            if plan.order[k] == "p":
                phase = run_polish(learner, f, g, family, k=k, amplitude=amplitude,
                                   steps=plan.polish_steps, seed=plan.seed, lr=plan.polish_lr,
                                   **tasks)  # fmt: skip
            elif plan.order[k] == "d":
                phase = run_distil(learner, f, g, family, k=k, amplitude=amplitude,
                                   restarts=plan.restarts, steps=plan.steps, anneal=plan.anneal,
                                   seed=plan.seed, lr=lr, keep_tasks=plan.distil_tasks,
                                   **tasks)  # fmt: skip
            else:
                phase = run_phase(
                    learner, f, g, family, k=k, slot=plan.order[k], restarts=plan.restarts,
                    steps=plan.steps, anneal=plan.anneal, within=plan.within, seed=plan.seed,
                    lr=lr, **tasks,
                )  # fmt: skip
        except PhaseStopped:
            raise RestartsStopped(signum=stop(), phase=k + 1) from None
        for r, (fit, a) in enumerate(zip(phase.fits, phase.agreement, strict=True)):
            name = {"p": "polished", "d": f"distilled {r}"}.get(phase.slot, f"restart {r}")
            name = "incumbent" if r == 0 else name
            mark = "  <- kept" if r == phase.kept else ""
            routed = f"  routed query {phase.query[r]:.5f}" if phase.query else ""
            say(f"restart phase {k + 1} ({phase.slot}): {name:<10} fit {fit:.5f}{routed}  "
                f"agreement {a:.3f}{mark}")  # fmt: skip
        if phase.ratio:
            say(
                f"restart phase {k + 1} ({phase.slot}): best distilled / incumbent, routed query "
                f"{phase.ratio[0]:.3f} ± {phase.ratio[1]:.3f} (kept only if wholly below 1)"
            )
        f, g = phase.f, phase.g
        _put_banks(state, kept=kept, f=f, g=g, amplitude=phase.amplitude)
        record["phases"].append(phase.record())
        ckpt[RECORD] = record
        if in_place or k == len(plan.order) - 1:
            atomic_save(ckpt, out)
    return record


def _put_banks(state: dict[str, Any], *, kept: int, f, g, amplitude: float | None) -> None:
    """Replica ``kept``'s banks (and amplitude limit) in a checkpoint's ``state_dict``."""
    for slot, bank in (("f", f), ("g", g)):
        for name, value in bank.state_dict().items():
            key = f"learner.{slot}_banks.{kept}.{name}"
            if key not in state:
                raise KeyError(f"no weight {key}")
            state[key] = value.detach().clone()
    if amplitude is not None:
        state["learner.amplitude"] = state["learner.amplitude"].clone()
        state["learner.amplitude"][kept] = amplitude


def run_stage(checkpoint: Path, *, learner, family: TaskFamily, plan: RestartPlan, lr: float,
              batch: int, shots: int, query: int, run_dir: Path, step: int,
              late: int | None = None) -> tuple[dict[str, Any], int | None]:  # fmt: skip
    """The stage ``train`` runs after the last meta-iteration: the phases of ``plan`` not yet done
    on the run's own ``checkpoint``, in place, each saved. Returns the record and the signal that
    came while the last phase was scored or saved (it finished; ``None``: none came).

    Raises:
        TrainingInterrupted: ``late`` (a signal that came during the last meta-iteration: no phase
            is started) or SIGINT/SIGTERM during a phase (its work is dropped); ``--resume`` runs
            the phases left.
    """
    n = len(plan.order)
    if late:
        raise TrainingInterrupted(signum=late, run_dir=run_dir, checkpoint=checkpoint, step=step,
                                  rank=0, where="before the block restarts")  # fmt: skip
    with stop_on_signal() as stop:
        try:
            record = restart_checkpoint(
                checkpoint, checkpoint, learner=learner, family=family, plan=plan, lr=lr,
                batch=batch, shots=shots, query=query, in_place=True, stop=stop,
            )  # fmt: skip
            return record, stop() or None
        except RestartsStopped as e:
            raise TrainingInterrupted(
                signum=e.signum,
                run_dir=run_dir,
                checkpoint=checkpoint,
                step=step,
                rank=0,
                where=f"during block-restart phase {e.phase} of {n}",
            ) from None
