"""One training run per run folder.

Two runs writing into one `run_dir` both "succeed": `metrics.jsonl` interleaves their steps and
the model is whichever saved last. A run holds an exclusive `flock` on `run_dir/.lock` for its
whole life; the file says who holds it (pid, host, start time). The kernel drops the lock when
its process dies, so a lock left by a killed run (`kill -9`, a crash) is stale: the next run
takes it over and says so.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_FILE = ".lock"


class RunLock:
    """`RunLock(run_dir).acquire()`: held until `release()` or the process ends."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.handle = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 (held open for the run's whole life)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(handle))
            handle.close()
            raise ValueError(f"run_dir {str(self.path.parent)!r} is in use by another training ({holder}): "
                             "wait for it to finish, or choose another run_dir") from None
        previous = _read(handle)
        if previous:  # a holder that never released: it was killed
            print(f"note: {self.path} was left by a run that is no longer running ({_describe(previous)}); "
                  "taking it over", file=sys.stderr)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        """Unlock and empty the file: an empty lock file is a clean finish, not a stale lock."""
        if self.handle is None:
            return
        try:
            self.handle.seek(0)
            self.handle.truncate()
            self.handle.flush()
        except OSError:  # a disk gone read-only or full: the lock still goes with the process
            pass
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        try:
            self.handle.close()
        except OSError:
            pass
        self.handle = None


def _read(handle) -> dict:
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except (json.JSONDecodeError, RecursionError):
        return {"pid": "?"}
    return holder if isinstance(holder, dict) else {"pid": "?"}


def _describe(holder: dict) -> str:
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
