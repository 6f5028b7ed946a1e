"""VHD (Virtual PC / Hyper-V VHD v1): layout, the disk, creation."""

from .image import VhdDisk

__all__ = ["VhdDisk"]
