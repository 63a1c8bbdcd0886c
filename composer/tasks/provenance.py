"""What a family's tasks were drawn from, stored in a run's checkpoints: a family read from data
(a grouped dataset through a spec file) is rebuilt from that file whenever the checkpoint is
loaded, and a spec or CSV edited after training would silently give other groups - meta-test
tasks from groups the model trained on. A checkpoint stores its family's provenance at training;
``eval``, ``report``, ``inspect``, ``verify`` and ``--resume`` refuse a family that differs."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class HasProvenance(Protocol):
    """A family whose tasks depend on data outside the run config: ``provenance`` is a small
    JSON-safe dict of what decides them (arguments, and digests of the groups and rows)."""

    provenance: dict[str, Any]


def digest(value: Any) -> str:
    """16 hex digits of the SHA-256 of ``value`` as JSON (sorted keys)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def provenance_of(family: object) -> dict[str, Any] | None:
    """``family.provenance`` for a family read from data; ``None`` for one built from its config."""
    return dict(family.provenance) if isinstance(family, HasProvenance) else None


# digests: what a difference in each means, for the message
DIGESTS = {
    "splits": "the groups in meta-train / meta-val / meta-test differ",
    "rows": "the rows per group differ",
    "features": "the input features differ",
}


def provenance_change(saved: dict[str, Any], now: dict[str, Any]) -> str | None:
    """The first difference between the provenance ``saved`` with a run and the family's ``now``,
    in words (``"split_seed 0 -> 1"``); ``None`` when they agree on every key they share (a key
    only one side has is not compared: a newer or older checkpoint format)."""
    shared = saved.keys() & now.keys()
    args = sorted(k for k in shared if k not in DIGESTS)
    for key in [*args, *(k for k in DIGESTS if k in shared)]:  # arguments first: they say why
        if saved[key] == now[key]:
            continue
        if key in DIGESTS:
            return DIGESTS[key]
        return f"{key} {saved[key]!r} -> {now[key]!r}"
    return None


def changed_data(saved: dict[str, Any] | None, family: object, *, source: str) -> str | None:
    """Why ``family`` is not the data a run stored as ``saved`` (``None``: it is, or nothing to
    compare), in one sentence naming ``source`` (the spec or data file the config reads)."""
    now = provenance_of(family)
    change = provenance_change(saved, now) if saved is not None and now is not None else None
    if change is None:
        return None
    return (
        f"the data {source} describes changed since the run was trained ({change}), so its "
        "meta-test tasks could come from groups it trained on: restore the file as it was, or "
        "train a new run"
    )


def data_source(task_args: Any) -> str:
    """What a grouped family's config reads, for messages: its spec, CSV or dataset name."""
    get = task_args.get if hasattr(task_args, "get") else (lambda key: None)
    for key in ("spec", "csv_path", "dataset"):
        if get(key):
            return f"task.args.{key} {get(key)}"
    return "task.args"
