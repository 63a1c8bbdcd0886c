"""``type=`` functions for argparse: a bad number is a one-line usage error (exit 2)."""

from __future__ import annotations

import argparse
import math

from metacompose.config.limits import ENFORCE_TIMEOUT_LIMIT, SIZE_LIMIT, STEPS_LIMIT


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def at_least(lo: int, hi: int | None = None):
    """An argparse type: an integer >= ``lo`` (and <= ``hi``)."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi}, got {value}")
        return value

    parse.__name__ = f"integer >= {lo}"
    return parse


COUNT_LIMIT = SIZE_LIMIT  # tasks, shots, networks: as the config's sizes
positive_int = at_least(1, COUNT_LIMIT)  # eval --tasks 10^12 ran for ever, --shots 10^8 was OOM
non_negative_int = at_least(0)
inner_steps = at_least(0, 10**4)  # as the config's algo.inner_steps (INNER_LIMIT)
seed = at_least(0, 2**63 - 1)  # as the config's seed: a negative one was taken silently
meta_steps = at_least(1, STEPS_LIMIT)  # as the config's trainer.max_steps


def int_list(parse):
    """An argparse type: comma-separated integers, each checked by ``parse`` (e.g.
    :func:`at_least`); the text is returned as written (``"1,5"``)."""

    def check(text: str) -> str:
        for part in text.split(","):
            parse(part.strip())
        return text

    check.__name__ = "comma-separated integers"
    return check


def device(text: str) -> str:
    """An argparse type: ``cpu``, or ``cuda``/``cuda:N`` on a machine that has that GPU."""
    import torch

    try:
        d = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected cpu or cuda[:N], got {text!r}") from None
    if d.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0 or (d.index or 0) >= count:
            raise argparse.ArgumentTypeError(f"{text}: no such CUDA GPU on this machine")
    elif d.type != "cpu":
        raise argparse.ArgumentTypeError(f"expected cpu or cuda[:N], got {text!r}")
    return text


def checkpoint(text: str) -> str:
    """An argparse type: a ``.ckpt`` file or a run folder holding ``checkpoints/last.ckpt``
    (scripts: a missing one is refused before any work, in one line)."""
    from metacompose.training.checkpoint_io import CheckpointError, checkpoint_file

    try:
        path = checkpoint_file(text)
    except CheckpointError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: checkpoint not found")
    return text


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def seconds(text: str) -> float:
    """An argparse type: a time budget per claim, > 0 and at most an hour (as the config's
    ``enforce.timeout_s``; z3 counts it in milliseconds in 32 bits)."""
    value = positive_float(text)
    if value > ENFORCE_TIMEOUT_LIMIT:
        raise argparse.ArgumentTypeError(
            f"must be <= {ENFORCE_TIMEOUT_LIMIT:g} (seconds per claim), got {text}"
        )
    return value


def short_usage(p: argparse.ArgumentParser, positionals: str) -> None:
    """A one-line usage for ``--help`` (a bad flag is one error line:
    :class:`~metacompose.cli.parser.OneLineParser`)."""
    p.usage = f"%(prog)s {positionals} [options] (--help lists them)"


def routing_option(p: argparse.ArgumentParser) -> None:
    """``--routing``: evaluate a routed checkpoint routed another way (:mod:`metacompose.reroute`)."""
    p.add_argument(
        "--routing",
        default=None,
        help="route each task this way instead of as trained: data or descriptor (annealed "
        "learners; data on a descriptor-trained checkpoint is the intermediate variant), router, "
        "search or topk (router learners)",
    )
