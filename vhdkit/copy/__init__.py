"""Block copy engine and live storage migration (DESIGN.md §6). Depends on disk and storage only.

``copy_disk`` copies what one disk holds into another; ``MirrorJob`` moves a disk a guest keeps
writing (through its ``GuestDisk`` handle) and switches the guest over.
"""

from .engine import CopyStats, CopyVerificationError, copy_disk, verify_copy
from .guest import GuestDisk
from .mirror import MirrorJob

__all__ = ["CopyStats", "CopyVerificationError", "GuestDisk", "MirrorJob", "copy_disk", "verify_copy"]
