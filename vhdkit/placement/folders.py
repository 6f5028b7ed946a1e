"""Folders and files on a location (a local folder or an SMB share), with one set of calls.

``Folders`` remembers the folders it made, so ``undo`` can take back a placement or a move that
failed halfway. Files are copied store to store over their allocated ranges only, so a sparse
dynamic disk stays sparse at its destination (and its bytes, GUIDs included, stay the same: a
differencing child still recognises the parent it was made against).
"""

from __future__ import annotations

import os
from typing import Any, Iterator

from .locations import Location

COPY_CHUNK = 1 << 20


class Folders:
    def __init__(self, location: Location) -> None:
        self.location = location
        self.made: list[tuple[str, str]] = []  # ("dir", path), in order made

    def join(self, base: str, *names: str) -> str:
        for name in names:
            base = f"{base.rstrip('/')}/{name}" if self.location.is_smb else os.path.join(base, name)
        return base

    def split(self, path: str) -> tuple[str, str]:
        """(folder, name) of ``path``: join's inverse."""
        if self.location.is_smb:
            folder, _, name = path.rstrip("/").rpartition("/")
            return folder, name
        return os.path.split(path)

    def _smb(self, path: str) -> tuple[str, dict[str, Any]]:
        from .locations import _share_root

        loc = self.location._smb(None)  # noqa: SLF001 - same package
        target = type(loc)(path, username=loc.username, password=loc.password, encrypt=loc.encrypt)
        return _share_root(target), target.options

    # -- asking --------------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        if self.location.is_smb:
            import smbclient

            unc, options = self._smb(path)
            try:
                smbclient.stat(unc, **options)
            except OSError:
                return False
            return True
        return os.path.exists(path)

    def kind(self, path: str) -> str | None:
        """"dir", "file" (a regular file), "other", or None when nothing is there."""
        import stat

        if self.location.is_smb:
            import smbclient

            unc, options = self._smb(path)
            try:
                mode = smbclient.stat(unc, **options).st_mode
            except OSError:
                return None
        else:
            try:
                mode = os.stat(path).st_mode
            except OSError:
                return None
        return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"

    def names(self, path: str) -> list[str]:
        """The entries of the folder ``path``, sorted."""
        return sorted(name for name, _ in self._entries(path))

    def walk(self, root: str) -> Iterator[str]:
        """Every file under ``root``, as paths relative to it ("/"-separated)."""
        stack = [""]
        while stack:
            rel = stack.pop()
            for name, is_dir in self._entries(self.join(root, *rel.split("/")) if rel else root):
                child = f"{rel}/{name}" if rel else name
                if is_dir:
                    stack.append(child)
                else:
                    yield child

    def _entries(self, path: str) -> list[tuple[str, bool]]:
        if self.location.is_smb:
            import smbclient

            unc, options = self._smb(path)
            return [(e.name, e.is_dir()) for e in smbclient.scandir(unc, **options)]
        return [(e.name, e.is_dir()) for e in os.scandir(path)]

    def read(self, path: str, limit: int = -1) -> bytes:
        """The file's bytes (at most ``limit`` of them, when given)."""
        if self.location.is_smb:
            import smbclient

            unc, options = self._smb(path)
            with smbclient.open_file(unc, "rb", **options) as f:
                return f.read(limit)
        with open(path, "rb") as f:
            return f.read(limit)

    # -- changing ------------------------------------------------------------------------------
    def mkdir(self, path: str) -> None:
        if self.location.is_smb:
            import smbclient

            unc, options = self._smb(path)
            try:
                smbclient.mkdir(unc, **options)
            except OSError as e:
                if e.errno != 17:
                    raise
                return
        else:
            try:
                os.mkdir(path)
            except FileExistsError:
                return
        self.made.append(("dir", path))

    def write(self, path: str, data: bytes, *, replace: bool = False) -> None:
        mode = "wb" if replace else "xb"
        if self.location.is_smb:
            import smbclient

            unc, options = self._smb(path)
            with smbclient.open_file(unc, mode, **options) as f:
                f.write(data)
        else:
            with open(path, mode) as f:
                f.write(data)

    def rename(self, old: str, new: str) -> None:
        """Give ``old`` the name ``new``, replacing a file there, in one step on either side."""
        if self.location.is_smb:
            import smbclient

            unc_old, options = self._smb(old)
            unc_new, _ = self._smb(new)
            smbclient.replace(unc_old, unc_new, **options)
        else:
            os.replace(old, new)

    def remove(self, path: str) -> None:
        if self.location.is_smb:
            import smbclient

            unc, options = self._smb(path)
            smbclient.remove(unc, **options)
        else:
            os.unlink(path)

    def remove_tree(self, path: str) -> None:
        if self.location.is_smb:
            import smbclient.shutil

            unc, options = self._smb(path)
            smbclient.shutil.rmtree(unc, **options)
        else:
            import shutil

            shutil.rmtree(path)

    def undo(self) -> None:
        """Remove the folders made, with everything in them (only this call put files there)."""
        for _, path in reversed(self.made):
            try:
                self.remove_tree(path)
            except Exception:  # noqa: BLE001 - best effort: the first error is the one reported
                pass
        self.made.clear()


def copy_file(source: str, target: str) -> int:
    """Copy one file (path or URL) into a new file, its allocated ranges only; returns bytes copied."""
    from ..storage import open_store

    copied = 0
    src = open_store(source)
    try:
        dst = open_store(target, create=True)
        try:
            buf = bytearray(COPY_CHUNK)
            for offset, length in src.allocated_ranges():
                end = offset + length
                while offset < end:
                    n = min(COPY_CHUNK, end - offset)
                    view = memoryview(buf)[:n]
                    got = src.preadinto(offset, view)
                    dst.pwrite(offset, view[:got])
                    copied += got
                    offset += n
            if dst.size() != src.size():
                dst.truncate(src.size())
            dst.flush()
        finally:
            dst.close()
    finally:
        src.close()
    return copied
