"""vhdkit.library: an index of the disk images on folders, as VMM's library server keeps one."""

from .catalog import Library, ScanReport, default_db, init_blank_disks
from .records import ImageRecord

__all__ = ["ImageRecord", "Library", "ScanReport", "default_db", "init_blank_disks"]
