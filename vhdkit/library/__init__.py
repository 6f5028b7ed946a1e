"""vhdkit.library: an index of the disk images on folders, as VMM's library server keeps one."""

from __future__ import annotations

from ..runtime_types import lazy_attributes
from .location import default_db

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .catalog import Library, ScanReport, init_blank_disks
    from .records import ImageRecord

__all__ = ["ImageRecord", "Library", "ScanReport", "default_db", "init_blank_disks"]

# Loaded on first use: the catalog brings sqlite3, and naming the default index needs none of it.
__getattr__ = lazy_attributes(globals(), {"Library": f"{__name__}.catalog", "ScanReport": f"{__name__}.catalog",
                                          "init_blank_disks": f"{__name__}.catalog",
                                          "ImageRecord": f"{__name__}.records"})
