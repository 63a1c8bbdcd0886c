"""Counterexamples in the VNN-COMP witness format, readable by users of external verifiers.

The format is an s-expression after a ``sat`` line: one ``(X_i value)`` per input and one
``(Y_j value)`` per output. For a deviation claim ``Y`` is the deviation
``f_adapted(x) - f_meta(x)`` (the output of the joint "difference" network); for an output-range
claim it is the adapted network's output.
"""

from __future__ import annotations

from pathlib import Path

import torch

from metacompose.symbolic.results import Counterexample


def format_vnn_witness(x: torch.Tensor, y: torch.Tensor) -> str:
    """The witness text for input ``x`` (``(n,)``) and output ``y`` (``(m,)``)."""
    entries = [f"(X_{i} {float(v)!r})" for i, v in enumerate(x.reshape(-1).tolist())]
    entries += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(y.reshape(-1).tolist())]
    return "sat\n(" + "\n ".join(entries) + ")\n"


def parse_vnn_witness(text: str) -> tuple[list[float], list[float]]:
    """Inverse of :func:`format_vnn_witness`: ``(xs, ys)``."""
    lines = text.strip().splitlines()
    if not lines or lines[0].strip() != "sat":
        raise ValueError("a VNN-COMP witness starts with a 'sat' line")
    xs, ys = [], []
    for tok in " ".join(lines[1:]).replace("(", " ").replace(")", " ").split():
        if tok.startswith(("X_", "Y_")):
            target = xs if tok[0] == "X" else ys
            continue
        target.append(float(tok))
    return xs, ys


def write_vnn_witness(path: str | Path, counterexample: Counterexample) -> None:
    """Write a counterexample that has an input ``x`` and a witness output ``y``."""
    if counterexample.x is None or counterexample.y is None:
        raise ValueError("this counterexample has no input/output pair to write as a witness")
    Path(path).write_text(format_vnn_witness(counterexample.x, counterexample.y))
