"""Temporary files of creates and converts: their names, and the ones a killed process left.

A new local image is written under a hidden name beside its own, ``.NAME.<pid>-<random>.vhdkit-tmp``,
and given its name only when complete (create.write_temporary, create.publish). A process killed
meanwhile leaves that file behind, and nothing will ever finish it. A temporary file is *stale*
when the process its name records is gone and nobody holds its lock (every vhdkit writer holds an
exclusive flock on the file it writes). The next create or convert of the same target removes its
stale ones; ``vhdkit check FOLDER`` reports them.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time

SUFFIX = ".vhdkit-tmp"
UNNAMED_WRITER_GRACE = 60.0  # seconds: names without a pid (older vhdkit) are judged by the lock after this


def temporary_name(path: str | os.PathLike[str]) -> str:
    """A fresh temporary name beside ``path``, recording this process."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f".{name}.{os.getpid()}-{os.urandom(4).hex()}{SUFFIX}")


def is_stale(temp: str | os.PathLike[str]) -> bool:
    """Whether the temporary file's writer is gone: its process dead and its lock free."""
    path = os.fspath(temp)
    pid = _writer_pid(os.path.basename(path))
    try:
        if pid is not None and _alive(pid):
            return False
        if pid is None and time.time() - os.lstat(path).st_mtime < UNNAMED_WRITER_GRACE:
            return False
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False  # gone already, a link, or not ours to judge
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a writer holds it
        return True
    finally:
        os.close(fd)


def stale_temporaries(folder: str | os.PathLike[str], target: str | None = None) -> list[str]:
    """The stale temporary files in ``folder`` (of ``target``'s name only, if given), sorted."""
    prefix = f".{target}." if target is not None else "."
    try:
        names = [e.name for e in os.scandir(folder) if e.name.startswith(prefix) and e.name.endswith(SUFFIX)]
    except OSError:
        return []
    return sorted(p for p in (os.path.join(os.fspath(folder), n) for n in names) if is_stale(p))


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[str]:
    """Remove the stale temporary files of the image ``path`` is about to become; returns them."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    removed = []
    for temp in stale_temporaries(folder, name):
        try:
            os.unlink(temp)
            removed.append(temp)
        except FileNotFoundError:
            pass
    return removed


def _writer_pid(name: str) -> int | None:
    """The pid a temporary name records (``.NAME.<pid>-<hex>.vhdkit-tmp``), or None."""
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    tag = stem.rsplit(".", 1)[-1]
    pid, sep, _ = tag.partition("-")
    return int(pid) if sep and pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True
