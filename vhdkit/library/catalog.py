"""The library: an SQLite index of every VHD/VHDX under some folders (VMM's library server),
kept current by incremental rescans.

A rescan reads again only the files whose size or modification time changed (a stat each); new
files are read, vanished ones dropped. Files without a disk suffix (.vhd, .vhdx, .avhd, .avhdx)
are skipped unread; a damaged image is recorded with its check's findings, never stops a scan.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Callable, Iterable, Iterator, NamedTuple

from ..errors import LibraryError, VhdkitError
from ..formats import VHD, VHDX
from ..ops.check import check
from ..ops.create import BLANK_SIZES, create
from ..ops.open import ALLOWED_DIRS_ENV, open_image
from ..storage import redact
from .location import default_db
from .records import DISK_SUFFIXES, ImageRecord, describe, from_row, to_row

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS images (
    {", ".join(f"{name} {'TEXT PRIMARY KEY' if name == 'path' else ''}" for name in ImageRecord._fields)}
);
CREATE INDEX IF NOT EXISTS images_parent ON images (parent);
"""
_INSERT = f"INSERT OR REPLACE INTO images VALUES ({', '.join('?' * len(ImageRecord._fields))})"


class ScanReport(NamedTuple):
    files: int  # disk files seen
    read: list[str]  # opened and checked this time (new or changed)
    unchanged: int
    removed: int  # records of files that are gone
    skipped: int  # files that are not disks


class Library:
    def __init__(self, db: str | os.PathLike[str] | None = None) -> None:
        path = os.fspath(db) if db is not None else default_db()
        self._allowed_parent_dirs: list[str] | None = None  # set by each scan
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if path != ":memory:":
            # the index says where every disk is: its owner's to read (0600 whatever the umask)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
            os.chmod(path, 0o600)
        try:
            self._db = sqlite3.connect(path)
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise LibraryError(f"cannot use {path} as the library's database: {e}") from e

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scanning -------------------------------------------------------------------------------
    def scan(self, locations: Iterable[str | os.PathLike[str]],
             progress: Callable[[int, str], None] | None = None) -> ScanReport:
        known = {row[0]: (row[1], row[2]) for row in self._db.execute(
            "SELECT path, file_size, mtime_ns FROM images")}
        seen: set[str] = set()
        read: list[str] = []
        skipped = 0
        roots = [_root(loc) for loc in locations]
        # Parents are looked for in the folders being indexed (and those the environment allows),
        # not just beside each child: a library keeps its base disks in folders of their own.
        env = os.environ.get(ALLOWED_DIRS_ENV, "")
        self._allowed_parent_dirs = roots + [d for d in env.split(os.pathsep) if d]
        now = time.time()
        for path, stat in _walk(roots):
            if not path.lower().endswith(DISK_SUFFIXES):
                skipped += 1
                continue
            seen.add(path)
            if known.get(path) == (stat.st_size, stat.st_mtime_ns):
                continue
            self._store(describe(path, stat, now, self._allowed_parent_dirs))
            read.append(path)
            if progress is not None:
                progress(len(seen), path)
        read += self._recheck_parents(now, set(read), seen)
        under = [p for p in known if any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)]
        gone = [p for p in under if p not in seen]
        self._db.executemany("DELETE FROM images WHERE path = ?", [(p,) for p in gone])
        self._db.commit()
        return ScanReport(len(seen), read, len(seen) - len(read), len(gone), skipped)

    def _store(self, record: ImageRecord) -> None:
        self._db.execute(_INSERT, to_row(record))

    def _recheck_parents(self, now: float, read: set[str], seen: set[str]) -> list[str]:
        """A child's file does not change when its parent changes, moves or comes back: the
        children of a parent read again this scan are read again (a write to the parent breaks
        the linkage), those whose resolved parent is gone are marked broken, and broken ones
        whose parent path exists again are read again. Depth first, so grandchildren follow."""
        changed: list[str] = []
        while True:
            more = self._recheck_once(now, read | set(changed), seen)
            if not more:
                return changed
            changed += more

    def _recheck_once(self, now: float, read: set[str], seen: set[str]) -> list[str]:
        changed = []
        for path, parent, status in self._db.execute(
                "SELECT path, parent, parent_status FROM images WHERE parent_status IS NOT NULL").fetchall():
            if path in read:
                continue
            # a parent this scan walked past is there; only others cost a look (a round trip on SMB)
            there = parent is not None and (parent in seen or _exists(parent))
            if status == "resolved" and not there:
                self._db.execute("UPDATE images SET parent_status = 'broken', parent_problem = ? WHERE path = ?",
                                 (f"the parent {parent} is no longer there", path))
            elif (parent in read or (status == "broken" and there)) and _exists(path):
                self._store(describe(path, _stat(path), now, self._allowed_parent_dirs))
                changed.append(path)
        return changed

    # -- queries --------------------------------------------------------------------------------
    def records(self, *, format: str | None = None, type: str | None = None,  # noqa: A002
                min_size: int | None = None, max_size: int | None = None, health: str | None = None,
                broken_parent: bool = False, children_of: str | None = None) -> list[ImageRecord]:
        where, args = [], []
        for column, value in (("format", format), ("type", type), ("verdict", health)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if min_size is not None:
            where.append("virtual_size >= ?")
            args.append(min_size)
        if max_size is not None:
            where.append("virtual_size <= ?")
            args.append(max_size)
        if broken_parent:
            where.append("parent_status = 'broken'")
        if children_of is not None:
            where.append("parent = ?")
            args.append(_key(children_of))
        sql = "SELECT * FROM images" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY path"
        return [from_row(row) for row in self._db.execute(sql, args)]

    def record(self, path: str | os.PathLike[str]) -> ImageRecord | None:
        row = self._db.execute("SELECT * FROM images WHERE path = ?", (_key(path),)).fetchone()
        return from_row(row) if row else None

    def tree(self, path: str | os.PathLike[str]) -> Iterator[tuple[int, ImageRecord]]:
        """The image and its descendants, depth first: (depth, record)."""
        top = self.record(path)
        if top is None:
            return
        stack = [(0, top)]
        while stack:
            depth, record = stack.pop()
            yield depth, record
            children = self.records(children_of=record.path)
            stack.extend((depth + 1, child) for child in reversed(children))


class FileFacts(NamedTuple):
    st_size: int
    st_mtime_ns: int
    st_blocks: int  # 512-byte units, as os.stat gives them


def _key(path: str | os.PathLike[str]) -> str:
    text = os.fspath(path)
    return text if _is_smb(text) else os.path.abspath(text)


def _absorb_password(url: str) -> str:
    """``url`` without its password; a password it held is checked by logging in, then kept in
    this process only, so the redacted URL works for the connections that follow."""
    if redact(url) != url:
        from ..storage.smb import SmbLocation, remember_password

        share = SmbLocation(url)
        share.connect()
        remember_password(share.host, share.port, share.username or "", share.password or "")
    return redact(url)


def _is_smb(path: str) -> bool:
    return path.startswith("smb://")


def _root(location: str | os.PathLike[str]) -> str:
    """A folder to index, as the library stores it: a path, or a URL without a password (one
    given in the URL is checked by logging in, then kept in this process only, for the scan's
    own connections; the index never holds it)."""
    text = os.fspath(location)
    if _is_smb(text):
        return _absorb_password(text).rstrip("/")
    root = os.path.abspath(text)
    if not os.path.isdir(root):
        raise LibraryError(f"{root} is not a folder")
    return root


def _walk(roots: list[str]) -> Iterator[tuple[str, FileFacts]]:
    for root in roots:
        yield from (_walk_smb(root) if _is_smb(root) else _walk_local(root))


def _walk_local(root: str) -> Iterator[tuple[str, FileFacts]]:
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # unreadable folder: nothing to index there
        for entry in sorted(entries, key=lambda e: e.name):
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_file():
                    st = entry.stat()
                    yield entry.path, FileFacts(st.st_size, st.st_mtime_ns, st.st_blocks)
            except OSError:
                continue


def _walk_smb(root: str) -> Iterator[tuple[str, FileFacts]]:
    """A share's files by SMB directory queries: one round trip per folder, the sizes, times and
    allocation come with the listing."""
    import smbclient

    from ..storage.smb import SmbLocation

    location = SmbLocation(root)
    location.connect()
    pending = [(location.unc, root)]
    while pending:
        unc, url = pending.pop()
        try:
            entries = list(smbclient.scandir(unc, **location.options))
        except OSError:
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir():
                pending.append((f"{unc}\\{entry.name}", f"{url}/{entry.name}"))
            else:
                yield f"{url}/{entry.name}", _facts(entry.smb_info)


def _facts(info: object) -> FileFacts:
    """Size, time and allocation from an SMB directory entry (FILE_ID_FULL_DIR_INFORMATION)."""
    written = info.last_write_time  # type: ignore[attr-defined]
    return FileFacts(info.end_of_file, round(written.timestamp() * 1e6) * 1000,  # type: ignore[attr-defined]
                     info.allocation_size // 512)  # type: ignore[attr-defined]


def _exists(path: str) -> bool:
    if not _is_smb(path):
        return os.path.exists(path)
    try:
        _stat(path)
    except (OSError, VhdkitError):
        return False
    return True


def _stat(path: str) -> FileFacts:
    if not _is_smb(path):
        st = os.stat(path)
        return FileFacts(st.st_size, st.st_mtime_ns, st.st_blocks)
    import smbclient

    from ..storage.smb import SmbLocation

    folder, _, name = path.rpartition("/")  # from the folder's listing, as a scan sees it
    location = SmbLocation(folder)
    location.connect()
    for entry in smbclient.scandir(location.unc, search_pattern=name, **location.options):
        if entry.name == name:
            return _facts(entry.smb_info)
    raise FileNotFoundError(path)


BLANK_DISKS = {"Blank Disk - Small": "small", "Blank Disk - Large": "large"}


def init_blank_disks(folder: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Put VMM's blank library disks in ``folder`` (a path or an smb:// URL) where missing: "Blank Disk - Small" (16 GiB)
    and "Blank Disk - Large" (60 GiB), dynamic, as .vhdx and .vhd; each is checked after it is
    made (exact size, clean). Returns (path, "created" or "present")."""
    out = []
    where = os.fspath(folder)
    if _is_smb(where):
        where = _absorb_password(where)
    for stem, blank in BLANK_DISKS.items():
        for fmt in (VHDX, VHD):
            name = stem + fmt.extensions[0]
            path = f"{where.rstrip('/')}/{name}" if _is_smb(where) else os.path.join(where, name)
            if _exists(path):
                out.append((path, "present"))
                continue
            create(path, BLANK_SIZES[blank], format=fmt).close()
            with open_image(path) as disk:
                size, kind = disk.size, disk.info().type
            verdict = check(path).verdict
            if (size, kind, verdict) != (BLANK_SIZES[blank], "dynamic", "clean"):
                raise LibraryError(f"{path} came out wrong: {size} bytes, {kind}, check {verdict}")
            out.append((path, "created"))
    return out
