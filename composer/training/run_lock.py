"""One trainer per run folder: an exclusive ``flock`` on ``RUN_DIR/.lock`` while a trainer writes it.

The kernel releases a ``flock`` when its process dies, however it dies (``kill -9`` included), so a
lock left by a dead trainer is never mistaken for a live one: the next trainer simply takes it. The
lock file itself stays (deleting it would let two processes lock two different files); it names the
last holder (pid, host, start time), which the refusal message quotes.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import IO

LOCK_NAME = ".lock"


class RunFolderBusy(ValueError):
    """Another live trainer holds the run folder; the message names it (pid, host, start time)."""


class RunLock:
    """The lock of one run folder, held from :meth:`acquire` until :meth:`release` (or ``with`` exit).

    Args:
        run_dir: the run folder (created if missing).
    """

    def __init__(self, *, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> RunLock:
        """Take the lock without waiting.

        Raises:
            RunFolderBusy: a live process holds it.
            OSError: the folder or lock file cannot be created (permissions, full disk).
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+")  # not "w": the holder's line must survive until we own the lock
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "an unknown process"
            f.close()
            raise RunFolderBusy(
                f"run folder {self.run_dir} is in use by another trainer ({holder}); wait for it to "
                "end, or choose another name="
            ) from None
        f.seek(0)
        f.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        """Give the lock up (closing the file releases the ``flock``)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLock:
        return self if self._file is not None else self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
