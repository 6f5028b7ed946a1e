"""vhdkit.vmbus: the channel between a Hyper-V guest and its host. A ring buffer laid out as
Linux's hv_ring_buffer, usable across processes; netvsc receive-buffer sizing and a loss
simulation; the ReceiveBufferSize/SendBufferSize registry change. A sibling package: it imports
nothing from vhdkit but errors."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .ring import FULL, WRITTEN, WRITTEN_SIGNAL, Packet, Ring, packet_size

__all__ = ["FULL", "WRITTEN", "WRITTEN_SIGNAL", "Packet", "Ring", "packet_size"]


def __getattr__(name: str) -> object:
    """The ring's names, loaded on first use (PEP 562): sizing and the registry need none of it."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import ring

    value = getattr(ring, name)
    globals()[name] = value
    return value
