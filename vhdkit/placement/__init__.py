"""Placement of VM files on storage locations (local folders, SMB 3 shares): where a VM's files
go, by free space and by which hosts reach them. Moving a VM between them (Live Storage, Live
VSM, Live) is vhdkit.vm.move's, above this layer (specs/vm.md)."""

from .locations import Capacity, Host, Identity, Location, Reach
from .planner import DiskSpec, Placement, Rating, VmSpec, choose, place, rate

__all__ = ["Capacity", "DiskSpec", "Host", "Identity", "Location", "Placement", "Rating", "Reach", "VmSpec", "choose", "place", "rate"]
