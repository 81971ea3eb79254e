"""One training process per output folder: a second run started on a folder in use stops at once.

The lock is an advisory ``flock`` on ``<output_folder>/.run.lock``, held by the main process of a run for
as long as it lives (its DDP ranks are the same run and take no lock). The operating system releases it
when the process ends, however it ends (``kill -9`` included), so a lock left by a killed run never blocks
the next one. A forked child (a DataLoader worker) closes its copy of the descriptor at once: a ``flock``
belongs to the open file, and the workers of a killed run live on for seconds. The file records who holds
it, for the message the second process prints.
"""

import fcntl
import json
import os
import socket
import sys
import time
import weakref
from pathlib import Path

__all__ = ["LOCK_FILE", "RunLock", "RunLockedError"]

LOCK_FILE = ".run.lock"
_HELD: "weakref.WeakSet[RunLock]" = weakref.WeakSet()


def _close_in_child() -> None:
    """After a fork, in the child: close its copies of the held locks' files (closing, unlike unlocking,
    leaves the parent's lock in place)."""
    for lock in list(_HELD):
        lock._file.close()


os.register_at_fork(after_in_child=_close_in_child)


class RunLockedError(RuntimeError):
    """Another live process is training in this output folder."""


class RunLock:
    """An exclusive lock on an output folder, released when :meth:`release` is called or the process ends.

    Arguments
    ---------
    folder : the run's output folder (created if needed).

    Raises
    ------
    RunLockedError : another process holds the lock; the message names it (pid, host, command, start).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+")  # noqa: SIM115 (held open for the life of the run)
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._holder()
            self._file.close()
            raise RunLockedError(
                f"Another training process is running in {self.path.parent}: {holder}. Wait for it to "
                "finish (rerunning the command afterwards resumes from its last checkpoint), stop it, or "
                "choose another --output_folder."
            ) from None
        self._file.seek(0)
        self._file.truncate()
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        _HELD.add(self)

    def _holder(self) -> str:
        """The holder as recorded in the lock file (read without the lock: best effort)."""
        try:
            record = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            record = {}
        if "pid" not in record:
            return "a process that has not recorded itself yet"
        return f"pid {record['pid']} on {record['host']}, started {record['started']}: {record['command']}"

    def release(self) -> None:
        """Give the lock up (also done by the operating system when the process ends)."""
        _HELD.discard(self)
        if not self._file.closed:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
