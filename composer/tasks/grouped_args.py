"""The arguments of a grouped dataset, checked as written before any file is read: one line naming
the key and the value (``min_rows='8'``, ``inputs=x``, a target that is also an input)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

FRACTION_SUM_TOL = 1e-6


def check_args(*, name: Any, dataset: Any, group: Any, inputs: Any, target: Any, csv_path: Any,
               min_rows: Any, split_seed: Any, fractions: Any, log_columns: Any) -> None:  # fmt: skip
    """Raise unless every argument has the type and range :class:`GroupedRegressionFamily` needs.

    Raises:
        ValueError: ``KEY=VALUE: expected ...`` (or what clashes with what), on one line.
    """
    for key, value in (("name", name), ("dataset", dataset), ("group", group), ("target", target)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{key}={value!r}: expected a non-empty name")
    _names("inputs", inputs, empty=False)
    _names("log_columns", log_columns, empty=True)
    repeated = sorted({c for c in inputs if list(inputs).count(c) > 1})
    if repeated:
        raise ValueError(f"inputs={list(inputs)}: {repeated[0]!r} is listed twice")
    if target == group:
        raise ValueError(f"target={target!r}: is the group column (group={group!r})")
    for role, col in (("target", target), ("group", group)):
        if col in inputs:
            raise ValueError(f"inputs={list(inputs)}: {col!r} is the {role} column")
    if csv_path is not None and not isinstance(csv_path, str | Path):
        raise ValueError(f"csv_path={csv_path!r}: expected a file path")
    for key, value, lo in (("min_rows", min_rows, 1), ("split_seed", split_seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{key}={value!r}: expected a whole number >= {lo}")
    ok = isinstance(fractions, list | tuple) and len(fractions) == 3
    ok = ok and all(_real(f) and 0 < f < 1 for f in fractions)
    if not ok or abs(sum(fractions) - 1) > FRACTION_SUM_TOL:
        raise ValueError(f"fractions={_shown(fractions)}: expected three shares in (0, 1) of the "
                         "groups (meta-train, meta-val, meta-test) summing to 1")  # fmt: skip


def _names(key: str, value: Any, *, empty: bool) -> None:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"{key}={value!r}: expected a list of column names, e.g. [x]")
    if not (value or empty):
        raise ValueError(f"{key}=[]: expected at least one column name")
    for c in value:
        if not isinstance(c, str) or not c:
            hint = f" (a column named {c}? write it quoted: '{c}')" if _real(c) else ""
            raise ValueError(f"{key}={list(value)!r}: {c!r} is not a column name{hint}")


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)
