"""Virtual machines: their configurations (Hyper-V XML, vhdkit's own), disks and checkpoint chains."""

from .loader import load
from .model import VmConfig, VmDisk, VmNic
from .plan import KINDS, MovePlan, plan_move

__all__ = ["KINDS", "MovePlan", "VmConfig", "VmDisk", "VmNic", "load", "plan_move"]
