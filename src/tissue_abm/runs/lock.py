"""An exclusive lock on a results folder, so that two batches never write into the same one.

The lock is the file `.lock` in the folder, created atomically (`O_CREAT | O_EXCL`: of two
processes, exactly one creates it) and holding the holder's process id, host and start time;
it is removed when the holder is done, and by a second Ctrl-C (`pool.at_hard_exit`). A lock
file left behind by a process that died (SIGKILL, power cut) names a process id that no longer
runs on this host: it is stale, and the next batch replaces it. The holder also keeps an
`flock` on the file, so that of two processes replacing the same stale lock only one does.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tissue_abm.runs.pool import at_hard_exit
from tissue_abm.runs.results import OutputError, now

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the process id check alone
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"
"""Name of the lock file inside a locked folder."""

WRITING_SECONDS = 5.0
"""An empty lock file younger than this is being written (its holder is between creating it and
writing its process id); an older one was left by a process that died at that moment."""

ATTEMPTS, PAUSE = 40, 0.05
"""How often, and how far apart (s), a busy or half-written lock is looked at again."""

HOST = socket.gethostname()


class FolderInUse(OutputError):
    """Another process holds the folder's lock; the message says which."""


@contextmanager
def lock_folder(folder: Path, user: str = "batch") -> Iterator[Path]:
    """Hold the lock of `folder` (which must exist) for the duration of the block.

    Args:
        folder: The results folder.
        user: What holds it, for the message another process gets ("batch", "sensitivity
            study").

    Raises:
        FolderInUse: If another live process holds it (one line naming the process and host).
        OutputError: If the lock file cannot be created.
    """
    path = folder / LOCK
    fd = _acquire(path, user)
    try:
        with at_hard_exit(lambda: _release(path, fd)):
            yield path
    finally:
        _release(path, fd)


def _acquire(path: Path, user: str) -> int:
    for attempt in range(ATTEMPTS):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _holder(path)
            verdict = _replace_if_stale(path, holder)
            if verdict:
                continue
            if verdict is None and attempt < ATTEMPTS - 1:
                time.sleep(PAUSE)
                continue
            raise FolderInUse(_in_use(path, holder)) from None
        except OSError as err:
            raise OutputError(f"cannot lock {path.parent}: {err.strerror or err}") from None
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else has it
        info = {"pid": os.getpid(), "host": HOST, "user": user, "since": now()}
        os.write(fd, (json.dumps(info) + "\n").encode())
        os.fsync(fd)
        return fd
    raise FolderInUse(_in_use(path, None))  # pragma: no cover - the loop raises or returns


def _holder(path: Path) -> dict[str, Any] | None:
    """The lock's holder as written in it; None while it is empty or unreadable."""
    try:
        return _parse(path.read_bytes())
    except OSError:
        return None


def _parse(content: bytes) -> dict[str, Any] | None:
    try:
        info = json.loads(content.decode("utf-8"))
    except ValueError:
        return None
    return info if isinstance(info, dict) and isinstance(info.get("pid"), int) else None


def _replace_if_stale(path: Path, holder: dict[str, Any] | None) -> bool | None:
    """Remove a stale lock file: True if gone (try again now), False if held, None if unsure."""
    if holder is None:
        try:
            young = time.time() - path.stat().st_mtime < WRITING_SECONDS
        except FileNotFoundError:
            return True
        if young:
            return None
    elif holder.get("host") != HOST or _alive(holder["pid"]):
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # another process is replacing it, or holds it
        if _parse(os.pread(fd, 65536, 0)) != holder:
            return None  # replaced since it was read: look again
        if holder is None and time.time() - os.fstat(fd).st_mtime < WRITING_SECONDS:
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.unlink(path)
        except FileNotFoundError:
            pass
        return True
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _in_use(path: Path, holder: dict[str, Any] | None) -> str:
    folder = path.parent
    if holder is None:
        return f"{folder} is locked by another process ({path} is being written); try again"
    who = f"{holder.get('user', 'batch')} (process {holder['pid']} on {holder.get('host')}"
    since = f", since {holder['since']}" if "since" in holder else ""
    hint = (
        f"; if that process has ended, delete {path}"
        if holder.get("host") != HOST
        else "; wait for it to end or choose another --out"
    )
    return f"{folder} is in use by another {who}{since}){hint}"


def _release(path: Path, fd: int) -> None:
    """Remove the lock file if it is still ours, and let go of it."""
    try:
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            os.unlink(path)
    except OSError:
        pass
    with suppress(OSError):
        os.close(fd)
