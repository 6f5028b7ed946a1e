"""A VMBus ring buffer, byte for byte as Linux's ``struct hv_ring_buffer`` (include/linux/hyperv.h)
and drivers/hv/ring_buffer.c use it; facts in specs/vmbus.md.

Layout: a 4 KiB header page (write_index @0x00, read_index @0x04, interrupt_mask @0x08,
pending_send_sz @0x0C, feature_bits @0x40; indices are byte offsets into the data area), then the
data area. A packet is a 16-byte descriptor (u16 type, u16 offset8, u16 len8, u16 flags, u64
trans_id; offset8/len8 in 8-byte units), its payload padded with zeros to 8 bytes, and an 8-byte
trailer holding the packet's start offset in its upper 32 bits. Packets wrap around the end of
the data area.

Rules kept here as Linux keeps them:
- A write that would leave the ring exactly full fails (free <= needed), so equal indices always
  mean empty.
- The writer signals the reader only when its packet made the ring go from empty to non-empty
  and the reader has interrupt_mask clear (Windows hosts throttle guests that signal too often).
- The reader publishes read_index once per batch, then signals the writer only if the free space
  crossed pending_send_sz (the writer's stated need), and only if feature bit 0 is set.
- The shared indices are stored as one aligned 32-bit store each (a memoryview cast to "I"; a
  struct.pack_into writes byte by byte, and a reader in another process saw torn indices), data
  before the index. That ordering holds on x86-64 (TSO) and is what CPython's memcpy gives there;
  weakly ordered CPUs would need barriers this module cannot issue.
"""

from __future__ import annotations

import struct
import sys
from typing import NamedTuple

from ..errors import RingCorruptError

HEADER_SIZE = 4096
WRITE_INDEX, READ_INDEX, INTERRUPT_MASK, PENDING_SEND_SZ, FEATURE_BITS = 0x00, 0x04, 0x08, 0x0C, 0x40
FEAT_PENDING_SEND_SZ = 1
DESCRIPTOR = struct.Struct("<HHHHQ")  # type, offset8, len8, flags, trans_id
DESCRIPTOR_SIZE = 16
TRAILER_SIZE = 8
VM_PKT_DATA_INBAND = 0x6
VM_PKT_COMP = 0xB
FLAG_COMPLETION_REQUESTED = 1

_PADDING = tuple(bytes(n) for n in range(8))  # zeros after a payload, up to the next 8-byte unit

# write() results
FULL, WRITTEN, WRITTEN_SIGNAL = 0, 1, 2

if sys.byteorder != "little":  # pragma: no cover - the layout is little-endian, read natively
    raise ImportError("vhdkit.vmbus reads the ring's fields natively and needs a little-endian CPU")


class Packet(NamedTuple):
    type: int
    flags: int
    trans_id: int
    payload: bytes


_new_tuple = tuple.__new__


def _packet_struct(length: int) -> struct.Struct:
    """Descriptor, payload, zero padding to 8 bytes and trailer of a packet with ``length`` payload
    bytes as one layout (pack_into zero-fills the pad bytes)."""
    pad = (DESCRIPTOR_SIZE + length + 7) // 8 * 8 - DESCRIPTOR_SIZE - length
    return struct.Struct(f"<HHHHQ{length}s{pad}xQ")


def packet_size(payload_length: int) -> int:
    """Bytes a packet takes in the ring: descriptor + payload padded to 8 + trailer."""
    return (DESCRIPTOR_SIZE + payload_length + 7) // 8 * 8 + TRAILER_SIZE


class Ring:
    """One direction of a channel over ``buffer`` (bytearray, mmap, shared memory): a header page
    then the data area. ``init=True`` zeroes the header and sets feature bit 0 (the side that
    creates the ring); the other process attaches with ``init=False``."""

    def __init__(self, buffer: object, *, init: bool = False) -> None:
        view = memoryview(buffer).cast("B")  # type: ignore[arg-type]
        if len(view) <= HEADER_SIZE or (len(view) - HEADER_SIZE) % 8:
            raise ValueError(f"a ring needs a {HEADER_SIZE}-byte header and a data area of 8-byte units, "
                             f"not {len(view)} bytes")
        self._view = view
        self._words = view[:HEADER_SIZE].cast("I")  # aligned 32-bit loads and stores
        self.data = view[HEADER_SIZE:]
        self.size = len(self.data)
        if init:
            view[:HEADER_SIZE] = bytes(HEADER_SIZE)
            self._words[FEATURE_BITS // 4] = FEAT_PENDING_SEND_SZ
        self._packet_structs: dict[int, struct.Struct] = {}  # payload length -> whole-packet layout
        self._payload_structs: dict[int, struct.Struct] = {}  # payload length -> "Ns"
        # statistics, as Linux counts them
        self.signals = 0
        self.full_count = 0

    # -- the shared fields --------------------------------------------------------------------
    @property
    def write_index(self) -> int:
        return self._words[0]

    @property
    def read_index(self) -> int:
        return self._words[1]

    @property
    def interrupt_mask(self) -> int:
        return self._words[2]

    @interrupt_mask.setter
    def interrupt_mask(self, value: int) -> None:
        self._words[2] = value

    @property
    def pending_send_sz(self) -> int:
        return self._words[3]

    @pending_send_sz.setter
    def pending_send_sz(self, value: int) -> None:
        self._words[3] = value

    @property
    def feature_bits(self) -> int:
        return self._words[FEATURE_BITS // 4]

    def bytes_to_write(self) -> int:
        w, r = self._words[0], self._words[1]
        return self.size - (w - r) if w >= r else r - w

    def bytes_to_read(self) -> int:
        return self.size - self.bytes_to_write()

    # -- writer -------------------------------------------------------------------------------
    def write(self, payload: bytes | bytearray | memoryview, *, trans_id: int = 0,
              packet_type: int = VM_PKT_DATA_INBAND, flags: int = 0) -> int:
        """Append one packet: FULL (nothing written), WRITTEN, or WRITTEN_SIGNAL (tell the reader)."""
        words, size = self._words, self.size
        length = len(payload)
        aligned = (DESCRIPTOR_SIZE + length + 7) & ~7
        total = aligned + TRAILER_SIZE
        w, r = words[0], words[1]
        free = size - (w - r) if w >= r else r - w
        if free <= total:  # "if there is only room for the packet, assume it is full"
            self.full_count += 1
            return FULL
        if w + total <= size:  # no wrap: the whole packet in one store (about half the time of four)
            whole = self._packet_structs.get(length)
            if whole is None:
                whole = self._packet_structs[length] = _packet_struct(length)
            if not isinstance(payload, (bytes, bytearray)):
                payload = bytes(payload)  # the "s" code takes bytes and bytearrays only
            whole.pack_into(self.data, w, packet_type, 2, aligned >> 3, flags, trans_id, payload, w << 32)
        else:
            head = DESCRIPTOR.pack(packet_type, 2, aligned >> 3, flags, trans_id)
            pad = aligned - DESCRIPTOR_SIZE - length
            self._copy_in(w, head + bytes(payload) + _PADDING[pad] + (w << 32).to_bytes(8, "little"))
        new_w = w + total
        if new_w >= size:
            new_w -= size
        words[0] = new_w  # publish after the data (one aligned store)
        if words[2] == 0 and w == words[1]:  # was empty, reader not masked: signal
            self.signals += 1
            return WRITTEN_SIGNAL
        return WRITTEN

    def _copy_in(self, at: int, blob: bytes) -> None:
        first = min(len(blob), self.size - at)
        self.data[at : at + first] = blob[:first]
        if first < len(blob):
            self.data[: len(blob) - first] = blob[first:]

    # -- reader -------------------------------------------------------------------------------
    def read(self, max_packets: int = 1 << 30) -> tuple[list[Packet], bool]:
        """Take up to ``max_packets`` packets, publish the read index once, and say whether the
        writer must be signalled (free space crossed pending_send_sz)."""
        words, size, data = self._words, self.size, self.data
        payload_structs = self._payload_structs
        unpack_descriptor = DESCRIPTOR.unpack_from
        w = words[0]
        r = start_r = words[1]
        out: list[Packet] = []
        append = out.append
        while r != w and len(out) < max_packets:
            available = w - r if w >= r else size - (r - w)
            if available < DESCRIPTOR_SIZE + TRAILER_SIZE:
                raise RingCorruptError(f"ring: {available} bytes at read index {r} cannot hold a packet")
            if r + DESCRIPTOR_SIZE <= size:
                ptype, offset8, len8, flags, trans_id = unpack_descriptor(data, r)
            else:
                ptype, offset8, len8, flags, trans_id = DESCRIPTOR.unpack(self._copy_out(r, DESCRIPTOR_SIZE))
            length, offset = len8 << 3, offset8 << 3
            # a hostile or damaged descriptor must not take us outside what was written
            if length < DESCRIPTOR_SIZE or offset < DESCRIPTOR_SIZE or offset > length \
                    or length + TRAILER_SIZE > available:
                raise RingCorruptError(f"ring: packet at {r} has offset8={offset8} len8={len8}, "
                                       f"{available} bytes written")
            at = r + offset
            if at >= size:
                at -= size
            n = length - offset
            if at + n <= size:  # one unpack copies the payload out: a third of bytes(data[a:b])
                take = payload_structs.get(n)
                if take is None:
                    take = payload_structs[n] = struct.Struct(f"{n}s")
                payload = take.unpack_from(data, at)[0]
            else:
                payload = self._copy_out(at, n)
            append(_new_tuple(Packet, (ptype, flags, trans_id, payload)))  # Packet(...) without its Python __new__
            r += length + TRAILER_SIZE
            if r >= size:
                r -= size
        if not out:
            return out, False
        words[1] = r  # publish once per batch
        return out, self._should_signal_writer(start_r, r, w)

    def _copy_out(self, at: int, n: int) -> bytes:
        first = min(n, self.size - at)
        return bytes(self.data[at : at + first]) + bytes(self.data[: n - first])

    def _should_signal_writer(self, old_r: int, new_r: int, w: int) -> bool:
        """hv_pkt_iter_close: signal when free space went from <= pending_send_sz to more."""
        if not self.feature_bits & FEAT_PENDING_SEND_SZ:
            return False
        pending = self._words[3]
        if not pending:
            return False
        read = new_r - old_r if new_r >= old_r else self.size - (old_r - new_r)
        now_free = self.bytes_to_write()
        before = now_free - read
        if before > pending or now_free <= pending:
            return False
        self.signals += 1
        return True
