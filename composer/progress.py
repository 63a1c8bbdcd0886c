"""One progress bar for every long loop: visible in a terminal, silent in logs and pipes.

Every command and script that works for more than a few seconds wraps its loop in
:func:`progress`. The bar goes to stderr (stdout stays parseable: tables, JSON, the run folder);
it is shown only when stderr is a terminal, and ``METACOMPOSE_PROGRESS=0`` turns it off
(``=1`` forces it on, e.g. under ``script`` or in a notebook).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

ENV = "METACOMPOSE_PROGRESS"


def progress_enabled() -> bool:
    """Whether bars are drawn: ``METACOMPOSE_PROGRESS`` if set (0/1), else stderr is a TTY."""
    flag = os.environ.get(ENV, "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return False
    if flag in ("1", "true", "yes", "on"):
        return True
    return sys.stderr.isatty()


@contextlib.contextmanager
def bars_off(when: bool = True) -> Iterator[None]:
    """No bars inside the block when ``when`` (``METACOMPOSE_PROGRESS=0`` there, restored after):
    a run with ``trainer.enable_progress_bar: false`` keeps its later stages as quiet as its
    training."""
    if not when:
        yield
        return
    before = os.environ.get(ENV)
    os.environ[ENV] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


def terminal_shape() -> dict[str, Any]:
    """tqdm's size options: follow the terminal, or a fixed size where it reports none.

    A pseudo-terminal without a size (``script``, some CI runners) reports 0 x 0, on which tqdm
    draws nothing at all; ``COLUMNS``/``LINES`` or 80 x 24 are used there instead.
    """
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        size = None
    if size is not None and size.columns and size.lines:
        return {"dynamic_ncols": True}
    columns, lines = shutil.get_terminal_size()
    return {"ncols": columns, "nrows": lines}


def progress(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
) -> tqdm:
    """A tqdm bar on stderr over ``iterable`` (or a manual one with ``total``; call ``update``).

    Args:
        iterable: what to loop over; ``None`` for a manual bar.
        desc: a short label, e.g. ``"eval"`` or ``"report: sample efficiency"``.
        total: number of items, when ``iterable`` has no length.
        unit: what one item is (``"task"``, ``"claim"``, ``"it"``).
    """
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        file=sys.stderr,
        disable=not progress_enabled(),
        leave=False,
        **terminal_shape(),
    )


def track(
    iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it"
) -> Iterator[T]:
    """Iterate ``iterable`` under a bar (a plain generator, closed when the loop ends)."""
    with progress(iterable, desc=desc, total=total, unit=unit) as bar:
        yield from bar


def say(text: str) -> None:
    """Print a result line to stdout (flushed) without tearing a progress bar on stderr."""
    with tqdm.external_write_mode(file=sys.stdout):
        print(text, flush=True)
