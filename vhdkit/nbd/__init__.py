"""An NBD server for any VirtualDisk (``vhdkit serve``): outside programs become the guest."""

from .server import NbdServer, parse_address, serve

__all__ = ["NbdServer", "parse_address", "serve"]
