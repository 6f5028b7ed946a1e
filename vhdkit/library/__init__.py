"""vhdkit.library: an index of the disk images on folders, as VMM's library server keeps one."""

from __future__ import annotations

from .location import default_db

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .catalog import Library, ScanReport, init_blank_disks
    from .records import ImageRecord

__all__ = ["ImageRecord", "Library", "ScanReport", "default_db", "init_blank_disks"]

# Loaded on first use (PEP 562): the catalog brings sqlite3, and naming the default index needs none of it.
_LAZY = {"Library": "catalog", "ScanReport": "catalog", "init_blank_disks": "catalog", "ImageRecord": "records"}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
