"""Placement of VM files on storage locations (local folders, SMB 3 shares), and moving running
VMs between them (Live Storage, Live VSM, Live): specs/migration.md, "Transfer types"."""

from .locations import Capacity, Host, Identity, Location, Reach
from .planner import DiskSpec, Placement, Rating, VmSpec, choose, place, rate

__all__ = ["Capacity", "DiskSpec", "Host", "Identity", "Location", "Placement", "Rating", "Reach", "VmSpec", "choose", "place", "rate"]
