"""Read a grouped dataset's CSV file strictly: every fault is one line naming the file (and the
line or column), never a traceback, and nothing in the data is silently reinterpreted.

- UTF-8 text (a byte-order mark is dropped); only commas separate cells.
- A header of distinct names; every line has as many cells as the header.
- A column is numeric when every non-missing cell parses as a number (empty, ``NA`` and ``NaN``
  cells are missing), else text; ``keep_text`` columns (the group column) stay text as written,
  so ``9007199254740993`` and ``9007199254740992`` stay two groups.
- A text column that is numeric but for a few cells (``?`` in a column of numbers) is refused
  when it is used as an input or the target (:func:`check_numeric`), naming the first such cell.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

MISSING = ("", "NA", "NaN", "nan")  # cells read as a missing value
STRAY_SHARE = 0.05  # a text column with at most this share of non-number cells is a typo


def read_csv_columns(path: str | Path, keep_text: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Columns of a CSV file as numpy arrays: float where every non-missing cell parses, else str.

    Raises:
        ValueError: the file is missing, a folder, unreadable, not UTF-8, empty, has a repeated
            column name or a line whose cell count differs from the header's (one line, naming
            the file and the line).
    """
    path = Path(path)
    if not path.is_file():
        why = "is a folder, not a CSV file" if path.is_dir() else "not found"
        raise ValueError(f"csv_path {path}: {why}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at byte "
                         f"{e.start}); save it as UTF-8") from None  # fmt: skip
    except (OSError, csv.Error) as e:
        raise ValueError(f"{path}: cannot read it as CSV ({e})") from None
    if not rows:
        raise ValueError(f"{path}: empty CSV file")
    header, body = rows[0], rows[1:]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise ValueError(f"{path}: column {repeated[0]!r} appears more than once in the header")
    if len(header) == 1 and ";" in header[0]:
        raise ValueError(f"{path}: one column {header[0]!r}: cells are separated by ';'? "
                         "only commas are read")  # fmt: skip
    for i, r in enumerate(body):
        if len(r) != len(header) and any(c.strip() for c in r):
            raise ValueError(f"{path}: line {i + 2} has {len(r)} cells, the header has "
                             f"{len(header)}")  # fmt: skip
    # a blank line is a row of missing cells (dropped later, counted): line numbers stay true
    body = [r if len(r) == len(header) else [""] * len(header) for r in body]
    keep = set(keep_text)
    out = {}
    for j, name in enumerate(header):
        cells = [r[j] for r in body]
        if name in keep:
            out[name] = np.array(cells, dtype=str)
            continue
        try:
            out[name] = np.array([math.nan if c.strip() in MISSING else float(c) for c in cells])
        except ValueError:
            out[name] = np.array(cells, dtype=str)
    return out


def check_columns(columns: dict[str, np.ndarray], *, group: str, inputs: list[str], target: str,
                  source: str) -> None:  # fmt: skip
    """The columns a grouped family reads exist, the inputs are numbers or text (not numbers
    with a few stray cells), and the target is numeric.

    Raises:
        ValueError: names ``source`` and the column.
    """
    for col in [group, *inputs, target]:
        if col not in columns:
            raise ValueError(f"{source}: no column {col!r} (columns: {', '.join(columns)})")
    for col in [*inputs, target]:
        check_numeric(columns[col], col, source)
    if columns[target].dtype.kind != "f":
        raise ValueError(f"{source}: target column {target!r} is not numeric")


def check_numeric(col: np.ndarray, name: str, source: str) -> None:
    """A text column used as a number (the target) or one that is numbers but for a few cells
    (any input) is refused naming its first non-number cell and its line.

    Raises:
        ValueError: ``source: column NAME is numeric but for N cell(s): 'CELL' on line L``.
    """
    if col.dtype.kind == "f":
        return
    present = [(i, c) for i, c in enumerate(col.tolist()) if c.strip() not in MISSING]
    strays = [(i, c) for i, c in present if not _is_number(c)]
    if strays and len(strays) <= STRAY_SHARE * len(present):
        i, cell = strays[0]
        raise ValueError(
            f"{source}: column {name!r} is numeric but for {len(strays)} cell(s), the first "
            f"{cell!r} on line {i + 2}: leave such cells empty (a missing value)"
        )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
