"""How the scripts in ``scripts/`` end on bad input: a config or checkpoint the library refuses is
one line on stderr naming the script, exit 2 (as a bad flag), never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def run_script(main: Callable[[], object]) -> None:
    """Run a script's ``main``; a :class:`~metacompose.config.ConfigError` or
    :class:`~metacompose.training.checkpoint_io.CheckpointError` it raises becomes
    ``SCRIPT: error: MESSAGE`` and exit status 2."""
    from metacompose.config import ConfigError
    from metacompose.training.checkpoint_io import CheckpointError

    try:
        main()
    except (ConfigError, CheckpointError) as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
