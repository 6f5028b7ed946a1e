"""Image locks that QEMU sees, and that see QEMU's.

QEMU (block/file-posix.c, ``locking=auto``) marks what each open of an image may do with Linux
open-file-description (OFD) byte-range locks, all of them *shared* (F_RDLCK) on single bytes:

- byte 100 + p: this open *holds* permission p;
- byte 200 + p: this open *does not let others* have permission p,

where p is 0 consistent read, 1 write, 2 write-unchanged, 3 resize. Before it proceeds, an opener
tests (F_OFD_GETLK as if for an exclusive lock) byte 200 + p for each p it holds and byte 100 + p
for each p it refuses to share: a lock there held by any other open file description means
another user forbids what it wants, or has what it forbids. Measured with qemu 7.2 (/proc/locks):
a VHDX writer (qemu-io, qemu-nbd) holds 100, 101, 103, 201, 203; a reader (qemu-nbd -r) holds
100, 201, 203; ``-U`` (force share) holds 100 only.

vhdkit takes the same bytes the same way, so ``qemu-img``/``qemu-io``/``qemu-nbd`` and vhdkit each
refuse an image the other writes, and a vhdkit reader refuses an image being written (a ``check``
during a ``compact`` says "in use" rather than reporting half-written metadata as damage).

OFD locks belong to an open file description, so two opens of one file in the *same* process
would see each other as strangers (a merge reads the chain while writing the parent). Every open
of a file in this process therefore shares one lock description (a private open of the same
inode) carrying the union of their locks; conflicts are looked for among other processes only.
"""

from __future__ import annotations

import _thread
import errno
import fcntl
import os
import struct

from ..errors import ImageInUseError
from ..runtime_types import Enum

FORCE_SHARE_ENV = "VHDKIT_FORCE_SHARE"  # "1": readers take no lock that keeps writers out (-U)

PERM_BASE = 100
SHARED_BASE = 200
CONSISTENT_READ_BIT, WRITE_BIT, WRITE_UNCHANGED_BIT, RESIZE_BIT = 0, 1, 2, 3
PERM_NAMES = {CONSISTENT_READ_BIT: "consistent read", WRITE_BIT: "write", WRITE_UNCHANGED_BIT: "write unchanged",
              RESIZE_BIT: "resize"}


class Access(Enum):
    """How an open uses the image: what it holds, and what it refuses to share (QEMU's perms)."""

    WRITE = (frozenset({CONSISTENT_READ_BIT, WRITE_BIT, RESIZE_BIT}), frozenset({WRITE_BIT, RESIZE_BIT}))
    READ = (frozenset({CONSISTENT_READ_BIT}), frozenset({WRITE_BIT, RESIZE_BIT}))  # it must stand still
    SHARED_READ = (frozenset({CONSISTENT_READ_BIT}), frozenset())  # qemu-img -U: read whatever is there

    @property
    def held(self) -> frozenset[int]:
        return self.value[0]

    @property
    def unshared(self) -> frozenset[int]:
        return self.value[1]

    def lock_bytes(self) -> set[int]:
        return {PERM_BASE + p for p in self.held} | {SHARED_BASE + p for p in self.unshared}


# struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
# (l_pid must be 0 for OFD locks), padded to the alignment of off_t.
_FLOCK = struct.Struct("hhqqi0q")


def _fcntl_lock(fd: int, command: int, kind: int, offset: int) -> int:
    """One OFD lock command on one byte; returns the l_type the kernel answers with."""
    answer = fcntl.fcntl(fd, command, _FLOCK.pack(kind, os.SEEK_SET, offset, 1, 0))
    return int(_FLOCK.unpack(answer)[0])


def _someone_else_holds(fd: int, offset: int) -> bool:
    return _fcntl_lock(fd, fcntl.F_OFD_GETLK, fcntl.F_WRLCK, offset) != fcntl.F_UNLCK


class _Inode:
    """This process's one lock description for a file, and the opens that use it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users: list[Access] = []
        self.held: set[int] = set()  # bytes locked on fd

    def wanted(self) -> set[int]:
        return set().union(*(u.lock_bytes() for u in self.users)) if self.users else set()

    def apply(self, wanted: set[int]) -> None:
        for offset in sorted(wanted - self.held):
            _fcntl_lock(self.fd, fcntl.F_OFD_SETLK, fcntl.F_RDLCK, offset)
            self.held.add(offset)
        for offset in sorted(self.held - wanted):
            _fcntl_lock(self.fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, offset)
            self.held.discard(offset)


_inodes: dict[tuple[int, int], _Inode] = {}
_mutex = _thread.allocate_lock()


class ImageLock:
    """The QEMU-visible lock of one open (see the module's docstring); ``release`` it on close."""

    def __init__(self, key: tuple[int, int], access: Access) -> None:
        self._key = key
        self.access = access
        self._released = False

    def release(self) -> None:
        with _mutex:
            if self._released:
                return
            self._released = True
            inode = _inodes[self._key]
            inode.users.remove(self.access)
            if inode.users:
                inode.apply(inode.wanted())
            else:
                del _inodes[self._key]
                os.close(inode.fd)  # closing the last fd of the description drops its locks


def lock_image(fd: int, path: str, access: Access) -> ImageLock | None:
    """Take ``access``'s locks for the file open on ``fd``, or raise ImageInUseError naming what
    another process holds. None where the filesystem has no OFD locks (it then has no QEMU
    locks to honour either, as QEMU's ``locking=auto`` also gives up there)."""
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    with _mutex:
        inode = _inodes.get(key)
        if inode is None:
            try:  # a description of our own, not the caller's: it outlives any one open
                own = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
            except OSError:
                return None
            inode = _Inode(own)
        before = set(inode.held)
        try:
            # Lock first, then test, as QEMU does: two openers racing then both see each other.
            inode.apply(before | access.lock_bytes())
            conflict = _conflict(inode.fd, access)
        except OSError as e:
            inode.apply(before)
            if not inode.users:
                os.close(inode.fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):  # an exclusive lock on the byte: another locker
                raise ImageInUseError(f"{path} is in use: another process locks it") from e
            if e.errno in (errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP):
                return None
            raise
        if conflict is not None:
            inode.apply(before)
            if not inode.users:
                os.close(inode.fd)
            hint = "; --force-share (qemu-img's -U) reads it anyway" if access is Access.READ else ""
            raise ImageInUseError(f"{path} is in use by another process ({conflict}){hint}")
        inode.users.append(access)
        _inodes[key] = inode
        return ImageLock(key, access)


def _conflict(fd: int, access: Access) -> str | None:
    """What another process holds that ``access`` cannot live with, in a phrase; None if nothing."""
    for p in sorted(access.held):
        if _someone_else_holds(fd, SHARED_BASE + p):
            return f"it does not share the {PERM_NAMES[p]} permission"
    for p in sorted(access.unshared):
        if _someone_else_holds(fd, PERM_BASE + p):
            return f"it holds the {PERM_NAMES[p]} permission"
    return None
