"""Placement of VM files on storage locations (local folders, SMB 3 shares): DESIGN.md §7."""

from .locations import Capacity, Host, Identity, Location, Reach

__all__ = ["Capacity", "Host", "Identity", "Location", "Reach"]
