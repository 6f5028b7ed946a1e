"""What the library knows of one disk image, read from its headers and a check."""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple, Sequence

from .. import formats
from ..errors import ParentMismatchError, ParentNotFoundError, VhdkitError
from ..ops.check import check
from ..ops.open import open_image

DISK_SUFFIXES = formats.DISK_EXTENSIONS


class ImageRecord(NamedTuple):
    path: str
    format: str | None  # "vhd", "vhdx"; None when the file could not be read as either
    type: str | None  # fixed / dynamic / differencing
    virtual_size: int | None
    file_size: int
    size_on_disk: int | None
    block_size: int | None
    logical_sector_size: int | None
    physical_sector_size: int | None
    disk_id: str | None
    creator: str | None
    parent: str | None  # the parent's path as resolved, or as the locator names it
    parent_status: str | None  # None (no parent), "resolved" or "broken"
    parent_problem: str | None  # why a parent is broken
    verdict: str  # vhdkit check's verdict: clean, leaks, corrupt, policy, incomplete, in use, not checked
    findings: list[str]
    mtime_ns: int
    scanned_at: float

    def as_dict(self) -> dict[str, Any]:
        return self._asdict()


def describe(path: str, stat: Any, now: float, allowed_parent_dirs: Sequence[str] | None = None) -> ImageRecord:
    """Open the image (headers and metadata only) and check it; a damaged one is described by
    what its check found instead of failing the scan. ``stat``: st_size, st_mtime_ns, st_blocks;
    ``allowed_parent_dirs``: where parents may be (see vhdkit.open)."""
    report = check(path, allowed_parent_dirs=allowed_parent_dirs)
    findings = [str(f) for f in report.findings] + ([report.failure] if report.failure else [])
    base: dict[str, Any] = dict(path=path, format=None, type=None, virtual_size=None, file_size=stat.st_size,
                                size_on_disk=stat.st_blocks * 512, block_size=None, logical_sector_size=None,
                                physical_sector_size=None, disk_id=None, creator=None, parent=None,
                                parent_status=None, parent_problem=None, verdict=report.verdict,
                                findings=findings, mtime_ns=stat.st_mtime_ns, scanned_at=now)
    problem = None
    try:
        try:
            disk = open_image(path, allowed_parent_dirs=allowed_parent_dirs)
        except (ParentNotFoundError, ParentMismatchError) as e:
            problem = str(e)
            disk = open_image(path, resolve_parents=False)
        with disk:
            info = disk.info()
    except VhdkitError as e:
        if not findings:
            base["findings"] = [str(e)]
        if base["verdict"] == "clean":
            base["verdict"] = "not checked"
        return ImageRecord(**base)
    if not formats.get(info.format).structured:
        base["verdict"] = "not checked"
        base["findings"] = findings or [f"not a VHD or VHDX image (reads as {info.format})"]
        return ImageRecord(**base)
    parent = info.parent or {}
    locators = parent.get("locators") or {}
    parent_path = parent.get("resolved") or _locator_path(path, locators)
    base.update(format=info.format, type=info.type, virtual_size=info.virtual_size, block_size=info.block_size,
                logical_sector_size=info.logical_sector_size, physical_sector_size=info.physical_sector_size,
                disk_id=info.disk_id, creator=info.creator, parent=parent_path,
                parent_status=None if not info.parent else ("broken" if problem else "resolved"),
                parent_problem=problem)
    return ImageRecord(**base)


def to_row(record: ImageRecord) -> tuple:
    values = list(record)
    values[ImageRecord._fields.index("findings")] = json.dumps(record.findings)
    return tuple(values)


def from_row(row: tuple) -> ImageRecord:
    values = list(row)
    i = ImageRecord._fields.index("findings")
    values[i] = json.loads(values[i])
    return ImageRecord(*values)


def _locator_path(child: str, locators: dict[str, Any]) -> str | None:
    """Where a broken parent was expected: the relative locator against the child's folder (as
    Hyper-V tries first), else the absolute one."""
    named = [v for k, v in locators.items() if k != "parent_linkage" and isinstance(v, str) and v]
    for value in named:
        text = value.replace("\\", "/")
        if text.startswith("./") or text.startswith("../"):
            if child.startswith("smb://"):
                folder, _, _ = child.rpartition("/")
                return f"{folder}/{text[2:]}" if text.startswith("./") else f"{folder}/{text}"
            return os.path.normpath(os.path.join(os.path.dirname(child), text))
    return named[0] if named else None
