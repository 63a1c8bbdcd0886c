"""How the scripts in ``scripts/`` end on bad input: a config or checkpoint the library refuses is
one line on stderr naming the script, exit 2 (as a bad flag), never a traceback."""

from __future__ import annotations

import contextlib
import os
import select
import sys
from collections.abc import Callable
from pathlib import Path

SIGPIPE_EXIT = 128 + 13  # what a shell reports for a writer whose reader went away


def stdout_gone() -> bool:
    """Whether stdout's reader went away (a ``BrokenPipeError`` from stdout, not from a socket or
    another pipe the command writes to: that one is a real error)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):
        return False
    try:  # nothing buffered: ask the descriptor (a pipe whose reader closed polls as an error)
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def reader_gone() -> int:
    """stdout's reader went away (``... | head``): point stdout at /dev/null, so that the
    interpreter's last flush does not fail again, and return the exit status a shell gives."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return SIGPIPE_EXIT


def run_script(main: Callable[[], object]) -> None:
    """Run a script's ``main``; a :class:`~metacompose.config.ConfigError` or
    :class:`~metacompose.training.checkpoint_io.CheckpointError` it raises becomes
    ``SCRIPT: error: MESSAGE`` and exit status 2."""
    from metacompose.config import ConfigError
    from metacompose.training.checkpoint_io import CheckpointError

    try:
        main()
    except BrokenPipeError:
        if not stdout_gone():
            raise
        sys.exit(reader_gone())
    except (ConfigError, CheckpointError) as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
