"""One process per folder: an exclusive lock file naming its holder (pid, host, start time).

The lock is an ``flock`` on the file, which the kernel releases when the holder dies however it dies (SIGKILL
included), so a lock left by a dead process on this host is taken over by the next taker without a race: taking it
is one atomic system call, and the pid and host written into the file only name the holder in the refusal message.
A folder on a network file system whose locks do not reach other hosts cannot prove a holder elsewhere dead: a lock
file naming another host is refused while that file exists (delete it once that process is known to be gone).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path


class FolderLockedError(RuntimeError):
    """Another process holds the folder's lock; the message names it."""


def _holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    started = holder.get("started")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if isinstance(started, (int, float)) \
        else ""
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}{when}"


class FolderLock:
    """``with FolderLock(folder / "sweep.lock", "talr sweep"):`` holds the lock for the block; raises
    FolderLockedError (naming the holder) when another live process has it."""

    def __init__(self, path: str | Path, what: str = "another process"):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise FolderLockedError(f"{self.path.parent} is in use by {self.what} ({_describe(_holder(self.path))}"
                                        f"; lock file {self.path})") from None
            # The holder may have released and deleted the file between our open and flock: then we locked a file
            # no longer at the path, and must lock the one that is.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = _holder(self.path)
        if holder.get("host") not in (None, socket.gethostname()):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise FolderLockedError(f"{self.path.parent} may be in use by {self.what} ({_describe(holder)}): its lock "
                                    f"cannot be checked from this host; delete {self.path} if that process is gone")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode(),
                  0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still locked, so no one locks the file being removed
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
