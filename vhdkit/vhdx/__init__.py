"""VHDX ([MS-VHDX] v6.00): layout, headers, region table, log, metadata, BAT, and the disk."""

from .image import VhdxDisk

__all__ = ["VhdxDisk"]
