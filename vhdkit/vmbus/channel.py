"""Two processes sharing a ring: a file-backed shared mapping (tmpfs: /dev/shm) and two
eventfds standing in for the VMBus signal (vmbus_setevent) in each direction.

The sender signals the receiver's doorbell only when Ring.write says so (empty -> non-empty with
interrupt_mask clear); a sender that finds the ring full states its need in pending_send_sz and
waits on its own doorbell, which the receiver rings when its reads free that much. A wait is
bounded (1 ms): a store to one index and a load of the other may pass each other even on x86
(store buffering), so a wakeup can be missed; the bound turns that into a short delay, never a
lost packet.

Test packets carry a sequence number and a CRC-32 of everything after it, so the receiver can
tell a lost, repeated, reordered or corrupted packet.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
import zlib
from typing import Callable, NamedTuple

from ..errors import ChannelError
from .ring import FULL, HEADER_SIZE, WRITTEN_SIGNAL, Ring, packet_size

WAIT_SECONDS = 0.001
_SEQ = struct.Struct("<QII")  # sequence number, payload length, CRC-32 of the number and the rest


class Doorbell:
    """An eventfd: ring() wakes wait()."""

    def __init__(self, fd: int | None = None) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK) if fd is None else fd

    def ring(self) -> None:
        os.eventfd_write(self.fd, 1)

    def wait(self, timeout: float = WAIT_SECONDS) -> None:
        readable, _, _ = select.select([self.fd], [], [], timeout)
        if readable:
            try:
                os.eventfd_read(self.fd)
            except BlockingIOError:
                pass


def map_ring(path: str, data_size: int | None = None) -> tuple[mmap.mmap, Ring]:
    """Map the ring file at ``path``; with ``data_size``, create it (header + data area) first."""
    if data_size is not None:
        with open(path, "wb") as f:
            f.truncate(HEADER_SIZE + data_size)
    fd = os.open(path, os.O_RDWR)
    try:
        mapping = mmap.mmap(fd, 0)
    finally:
        os.close(fd)
    return mapping, Ring(mapping, init=data_size is not None)


def numbered_payload(seq: int, size: int, filler: bytes) -> bytes:
    rest = filler[: size - _SEQ.size]
    return _SEQ.pack(seq, size, zlib.crc32(rest, zlib.crc32(seq.to_bytes(8, "little")))) + rest


def check_payload(payload: bytes, expected_seq: int) -> bool:
    """Whether ``payload`` (as read: padded to 8 bytes) is numbered packet ``expected_seq``, whole."""
    if len(payload) < _SEQ.size:
        return False
    seq, size, crc = _SEQ.unpack_from(payload)
    return (seq == expected_seq and _SEQ.size <= size <= len(payload) < size + 8
            and crc == zlib.crc32(payload[_SEQ.size : size], zlib.crc32(payload[:8])))


def send(ring: Ring, receiver: Doorbell, sender: Doorbell, payloads: Callable[[int], bytes], count: int,
         first_trans_id: int = 0, peer_gone: Callable[[], bool] = lambda: False) -> int:
    """Send ``count`` packets (payloads(i) makes the i-th, trans_id counts from
    ``first_trans_id``); returns how often the sender slept on a full ring. A full ring whose
    reader is gone (``peer_gone()``) raises ChannelError instead of waiting for ever."""
    waits = 0
    for i in range(count):
        payload = payloads(i)
        while True:
            result = ring.write(payload, trans_id=first_trans_id + i)
            if result != FULL:
                break
            need = packet_size(len(payload))
            ring.pending_send_sz = need
            if ring.bytes_to_write() <= need:  # still full after stating the need: sleep
                waits += 1
                if waits % 256 == 0 and peer_gone():
                    raise ChannelError(f"the ring stayed full and its reader is gone (after {i} packets)")
                sender.wait()
        if ring.pending_send_sz:
            ring.pending_send_sz = 0
        if result == WRITTEN_SIGNAL:
            receiver.ring()
    return waits


def receive(ring: Ring, receiver: Doorbell, sender: Doorbell, count: Callable[[], int], check: bool = True,
            peer_gone: Callable[[], bool] = lambda: False) -> tuple[int, int]:
    """Take packets until ``count()`` (-1 while unknown) have arrived; returns (received, bad).
    An empty ring whose writer is gone (``peer_gone()``) raises ChannelError."""
    got = bad = idle = 0
    ring.interrupt_mask = 1  # draining: no signals needed
    while got != count():
        packets, signal_writer = ring.read()
        if signal_writer:
            sender.ring()
        if packets:
            if check:
                for packet in packets:
                    if packet.trans_id != got or not check_payload(packet.payload, got):
                        bad += 1
                    got += 1
            else:
                got += len(packets)
            continue
        ring.interrupt_mask = 0  # idle: ask for a signal, then look once more before sleeping
        if not ring.bytes_to_read():
            idle += 1
            if idle % 256 == 0 and peer_gone() and not ring.bytes_to_read():
                raise ChannelError(f"the ring is empty and its writer is gone ({got} packets received)")
            receiver.wait()
        ring.interrupt_mask = 1
    return got, bad


def _peak_rss() -> int:
    """This process's peak resident set in bytes (Linux's VmHWM), 0 where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RunResult(NamedTuple):
    sent: int
    received: int
    bad: int
    seconds: float  # from the first packet sent to the last one received
    full_waits: int  # times the sender slept on a full ring
    receiver_peak_rss: int = 0  # bytes, the receiving process's peak resident set (0: unknown)

    @property
    def packets_per_second(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0


def two_processes(payload_size: int, *, count: int | None = None, seconds: float | None = None,
                  data_size: int = 1 << 20, check: bool = True, folder: str = "/dev/shm") -> RunResult:
    """Send numbered packets from this process to a forked one through a shared ring: ``count``
    packets, or as many as fit in ``seconds``."""
    import multiprocessing
    import tempfile
    import time

    if payload_size < _SEQ.size:
        raise ValueError(f"a numbered packet needs at least {_SEQ.size} bytes of payload")
    ctx = multiprocessing.get_context("fork")
    fd, path = tempfile.mkstemp(prefix="vhdkit-ring-", dir=folder if os.path.isdir(folder) else None)
    os.close(fd)
    receiver_bell, sender_bell = Doorbell(), Doorbell()
    total = ctx.Value("q", -1 if count is None else count, lock=False)
    done = ctx.Value("d", 0.0, lock=False)
    outcome = ctx.Array("q", 3, lock=False)
    try:
        mapping, ring = map_ring(path, data_size)

        def child() -> None:
            child_map, child_ring = map_ring(path)
            got, bad = receive(child_ring, receiver_bell, sender_bell, lambda: total.value, check)
            done.value = time.perf_counter()
            outcome[0], outcome[1], outcome[2] = got, bad, _peak_rss()
            del child_ring
            child_map.close()

        process = ctx.Process(target=child)
        process.start()
        filler = bytes(range(256)) * (payload_size // 256 + 1)
        make = (lambda seq: numbered_payload(seq, payload_size, filler)) if check else (lambda seq: filler[:payload_size])
        start = time.perf_counter()
        if count is not None:
            waits = send(ring, receiver_bell, sender_bell, make, count, peer_gone=lambda: not process.is_alive())
            sent = count
        else:
            sent = waits = 0
            deadline = start + (seconds or 1.0)
            while time.perf_counter() < deadline:
                waits += send(ring, receiver_bell, sender_bell, lambda i, first=sent: make(first + i), 4096,
                              first_trans_id=sent, peer_gone=lambda: not process.is_alive())
                sent += 4096
            total.value = sent
            receiver_bell.ring()
        process.join()
        if process.exitcode != 0:
            raise ChannelError(f"the receiving process failed (exit {process.exitcode})")
        del ring
        mapping.close()
        return RunResult(sent, outcome[0], outcome[1], done.value - start, waits, outcome[2])
    finally:
        os.unlink(path)
        os.close(receiver_bell.fd)
        os.close(sender_bell.fd)

