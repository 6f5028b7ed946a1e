"""Virtual machines: their configurations (Hyper-V XML, vhdkit's own), disks and checkpoint chains."""

from .loader import load
from .model import VmConfig, VmDisk, VmNic

__all__ = ["VmConfig", "VmDisk", "VmNic", "load"]
