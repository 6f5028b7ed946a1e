"""vhdkit.vmbus: the channel between a Hyper-V guest and its host. A ring buffer laid out as
Linux's hv_ring_buffer, usable across processes; netvsc receive-buffer sizing and a loss
simulation; the ReceiveBufferSize/SendBufferSize registry change. A sibling package: it imports
nothing from vhdkit but errors."""

from .ring import FULL, WRITTEN, WRITTEN_SIGNAL, Packet, Ring, packet_size

__all__ = ["FULL", "WRITTEN", "WRITTEN_SIGNAL", "Packet", "Ring", "packet_size"]
