"""What a checkpoint says about block restarts: the record the restart stage (or
``scripts/restart_banks.py``) writes under :data:`~metacompose.training.resume.RESTART_RECORD`,
read back and put in one line for ``eval`` and ``inspect``, so that a reviewer scoring a
checkpoint sees whether its banks are the trained ones or restarted ones, and which."""

from __future__ import annotations

from typing import Any

from metacompose.training.resume import RESTART_RECORD


def record_in(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The block-restart record of a checkpoint already loaded (:func:`~metacompose.training.
    checkpoint_io.safe_load`), or ``None`` when it has none."""
    record = ckpt.get(RESTART_RECORD)
    return record if isinstance(record, dict) else None


def describe_restarts(record: dict[str, Any]) -> str:
    """One line: the replica whose banks were restarted, and per phase what it kept.

    ``"block restarts on replica 10 (restart.seed 0, 4 restarts of 2000 steps a phase): phase 1
    (f) kept restart 4, phase 2 (g) kept the incumbent"``; a run stopped between phases says how
    many of the planned phases are done."""
    plan = record.get("plan") if isinstance(record.get("plan"), dict) else {}
    phases = [ph for ph in record.get("phases") or [] if isinstance(ph, dict)]
    order = str(plan.get("order", ""))
    done = []
    for i, ph in enumerate(phases, start=1):
        kept = ph.get("kept")
        what = "the incumbent" if kept == 0 else f"restart {kept}"
        if ph.get("slot") == "p":
            what = "the incumbent" if kept == 0 else "the polished banks"
        if ph.get("slot") == "d" and kept != 0:
            what = f"distilled banks {kept}"
        done.append(f"phase {i} ({ph.get('slot', '?')}) kept {what}")
    left = len(order) - len(phases)
    settings = (
        f"restart.seed {plan.get('seed', '?')}, {plan.get('restarts', '?')} restarts of "
        f"{plan.get('steps', '?')} steps a phase"
    )
    if "p" in order:
        settings += f", a polish of {plan.get('polish_steps', '?')} steps"
    line = f"block restarts on replica {record.get('kept', '?')} ({settings}): "
    line += ", ".join(done) if done else "no phase done"
    if left > 0:
        line += f"; {left} of the {len(order)} planned ({order}) not run (train --resume runs them)"
    return line
