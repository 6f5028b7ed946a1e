"""Hyper-V 2016+ binary configurations (.vmcx). Not read yet: the format has no public
specification, and vhdkit will read it from facts gathered on real files (specs/vm.md)."""

from __future__ import annotations

from ..errors import UnsupportedFeatureError
from .model import VmConfig


def read(data: bytes, name: str) -> VmConfig:
    raise UnsupportedFeatureError(f"{name}: reading .vmcx configurations (Hyper-V 2016 and later) is not "
                                  "supported yet; export the VM (Export-VM) from a 2012 R2 host, or describe it "
                                  "with a .vhdkit.json")
