"""Block copy engine (and, later, live storage migration). Depends on disk and storage only."""

from .engine import CopyStats, CopyVerificationError, copy_disk, verify_copy

__all__ = ["CopyStats", "CopyVerificationError", "copy_disk", "verify_copy"]
