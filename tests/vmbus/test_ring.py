"""The VMBus ring: golden bytes of the layout, the full/empty and signalling rules, hostile
descriptors, a C peer written from Linux's structures (both directions, many wraps), and two
processes exchanging packets for 10 s over shared memory with nothing lost or corrupted."""

from __future__ import annotations

import struct
import subprocess

import pytest

from vhdkit.errors import RingCorruptError
from vhdkit.vmbus import FULL, WRITTEN, WRITTEN_SIGNAL, Ring, packet_size
from vhdkit.vmbus.channel import Doorbell, map_ring, numbered_payload, receive, send, two_processes

from ..conftest import require_tool

HEADER = 4096


def ring_of(data_size: int) -> tuple[bytearray, Ring]:
    buf = bytearray(HEADER + data_size)
    return buf, Ring(buf, init=True)


def test_golden_bytes_of_the_header_and_two_packets():
    buf, ring = ring_of(4096)
    assert struct.unpack_from("<IIII", buf, 0) == (0, 0, 0, 0) and struct.unpack_from("<I", buf, 0x40) == (1,)
    assert ring.write(b"\xaa", trans_id=0x1122334455667788) == WRITTEN_SIGNAL
    assert bytes(buf[HEADER : HEADER + 32]) == bytes.fromhex(
        "0600 0200 0300 0000 8877665544332211"  # type 6, offset8 2, len8 3 (24 bytes), flags 0, trans_id
        "aa 00000000000000"  # one byte of payload, padded to 8
        "0000000000000000")  # trailer: this packet started at offset 0 (upper 32 bits)
    assert struct.unpack_from("<I", buf, 0) == (32,)  # write_index
    assert ring.write(bytes(range(9)), trans_id=7, flags=1) == WRITTEN  # not empty before: no signal
    assert bytes(buf[HEADER + 32 : HEADER + 48]) == bytes.fromhex("0600 0200 0400 0100 0700000000000000")
    assert bytes(buf[HEADER + 48 : HEADER + 64]) == bytes(range(9)) + bytes(7)
    assert struct.unpack_from("<Q", buf, HEADER + 64) == (32 << 32,)
    packets, _ = ring.read()
    assert [(p.type, p.flags, p.trans_id, p.payload) for p in packets] == [
        (6, 0, 0x1122334455667788, b"\xaa" + bytes(7)), (6, 1, 7, bytes(range(9)) + bytes(7))]
    assert struct.unpack_from("<II", buf, 0) == (72, 72)  # equal indices: empty


def test_a_write_that_would_fill_the_ring_exactly_fails():
    _, ring = ring_of(72)  # three empty packets (24 bytes each) would fill it exactly
    assert packet_size(0) == 24
    assert ring.write(b"") == WRITTEN_SIGNAL and ring.write(b"") == WRITTEN
    assert ring.bytes_to_write() == 24
    assert ring.write(b"") == FULL  # free == needed: refused, so write_index never catches read_index
    assert ring.write_index == 48 and ring.full_count == 1
    ring.read(1)
    assert ring.write(b"") == WRITTEN  # 48 free > 24: fits, wrapping to offset 0
    assert ring.write_index == 0 and ring.bytes_to_read() == 48


def test_the_writer_signals_only_empty_to_non_empty_with_the_mask_clear():
    _, ring = ring_of(4096)
    ring.interrupt_mask = 1
    assert ring.write(b"x") == WRITTEN  # the reader is polling: no signal
    ring.read()
    ring.interrupt_mask = 0
    assert [ring.write(b"x") for _ in range(3)] == [WRITTEN_SIGNAL, WRITTEN, WRITTEN]
    ring.read()
    assert ring.write(b"x") == WRITTEN_SIGNAL and ring.signals == 2


@pytest.mark.parametrize("pending, packets_read, signal", [
    (0, 4, False),  # the writer states no need
    (100, 1, False),  # free space before the read (1024 - 6*32 = 832) is already above the need
    (900, 1, False),  # 832 -> 864: still not above 900
    (900, 3, True),  # 832 -> 928: crossed 900
    (800, 6, False),  # was already above
])
def test_the_reader_signals_when_free_space_crosses_pending_send_sz(pending, packets_read, signal):
    _, ring = ring_of(1024)
    for _ in range(6):
        ring.write(b"12345678")  # 16 + 8 + 8 = 32 bytes each
    ring.pending_send_sz = pending
    packets, should_signal = ring.read(packets_read)
    assert len(packets) == packets_read and should_signal is signal


def test_no_reader_signal_without_the_feature_bit():
    buf, ring = ring_of(1024)
    for _ in range(6):
        ring.write(b"12345678")
    struct.pack_into("<I", buf, 0x40, 0)
    ring.pending_send_sz = 900
    assert ring.read(3)[1] is False


@pytest.mark.parametrize("descriptor", [
    struct.pack("<HHHHQ", 6, 2, 200, 0, 0),  # len8 past what was written
    struct.pack("<HHHHQ", 6, 1, 3, 0, 0),  # data offset inside the descriptor
    struct.pack("<HHHHQ", 6, 5, 3, 0, 0),  # data offset past the packet
    struct.pack("<HHHHQ", 6, 2, 1, 0, 0),  # shorter than a descriptor
])
def test_a_hostile_descriptor_is_refused_not_followed(descriptor):
    buf, ring = ring_of(4096)
    ring.write(b"payload!")
    buf[HEADER : HEADER + 16] = descriptor
    with pytest.raises(RingCorruptError, match="offset8|cannot hold"):
        ring.read()
    assert ring.read_index == 0  # nothing consumed


def test_packets_wrap_around_the_end_intact():
    _, ring = ring_of(1000 - 1000 % 8)
    seq = 0
    for round_ in range(50):
        sent = []
        while True:
            payload = numbered_payload(seq, 16 + seq * 37 % 300, bytes(range(256)) * 2)
            if ring.write(payload, trans_id=seq) == FULL:
                break
            sent.append(payload)
            seq += 1
        got, _ = ring.read()
        assert [p.payload[: len(s)] for p, s in zip(got, sent)] == sent and len(got) == len(sent), f"round {round_}"
    assert seq > 50 * 2


@pytest.fixture(scope="module")
def ring_peer(tmp_path_factory):
    gcc = require_tool("gcc")
    exe = tmp_path_factory.mktemp("peer") / "ring_peer"
    source = __import__("pathlib").Path(__file__).with_name("ring_peer.c")
    subprocess.run([gcc, "-O2", "-Wall", "-Werror", "-o", str(exe), str(source)], check=True)
    return exe


def test_a_c_peer_reads_what_vhdkit_writes_across_many_wraps(ring_peer, tmp_path):
    path = str(tmp_path / "ring")
    mapping, ring = map_ring(path, 8192)
    count = 3000
    peer = subprocess.Popen([ring_peer, "read", path, str(count)], stdout=subprocess.PIPE, text=True)
    filler = bytes(range(256)) * 2
    send(ring, Doorbell(), Doorbell(), lambda i: numbered_payload(i, 16 + i * 37 % 300, filler), count,
         peer_gone=lambda: peer.poll() is not None)
    out, _ = peer.communicate(timeout=60)
    assert peer.returncode == 0, out
    assert out.startswith(f"ok {count} wraps ") and int(out.split()[-1]) >= 5, out
    del ring
    mapping.close()


def test_vhdkit_reads_what_a_c_peer_writes_across_many_wraps(ring_peer, tmp_path):
    path = str(tmp_path / "ring")
    mapping, ring = map_ring(path, 8192)
    count = 3000
    peer = subprocess.Popen([ring_peer, "write", path, str(count)], stdout=subprocess.PIPE, text=True)
    got, bad = receive(ring, Doorbell(), Doorbell(), lambda: count, peer_gone=lambda: peer.poll() is not None)
    out, _ = peer.communicate(timeout=60)
    assert peer.returncode == 0 and int(out.split()[-1]) >= 5, out
    assert (got, bad) == (count, 0)
    del ring
    mapping.close()


def test_two_processes_exchange_a_million_256_byte_packets_without_loss():
    """A soak counted in packets, not seconds (a loaded machine only makes it slower): a million
    numbered 256-byte packets wrap the 1 MiB ring about 270 times; every one arrives, in order, intact."""
    result = two_processes(256, count=1_000_000)
    assert (result.sent, result.received, result.bad) == (1_000_000, 1_000_000, 0)


def test_numbered_payload_checks_catch_damage():
    from vhdkit.vmbus.channel import check_payload

    good = numbered_payload(5, 40, bytes(range(256)))
    padded = good + bytes(-len(good) % 8)
    assert check_payload(padded, 5)
    assert not check_payload(padded, 6)
    damaged = bytearray(padded)
    damaged[30] ^= 1
    assert not check_payload(bytes(damaged), 5)
