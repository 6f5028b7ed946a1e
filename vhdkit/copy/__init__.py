"""The block copy engine: copy what one disk holds into another (convert, merge to a new disk).

It depends on ``disk`` alone; live migration (``vhdkit.migration``) builds on the same disks but
not on this package.
"""

from .engine import CopyStats, copy_disk, verify_copy

__all__ = ["CopyStats", "copy_disk", "verify_copy"]
