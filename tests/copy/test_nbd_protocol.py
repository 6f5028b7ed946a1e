"""The NBD server against a client that breaks the protocol: it answers what the protocol lets it
answer, hangs up on the rest, and goes on serving everyone else."""

from __future__ import annotations

import socket
import struct

import vhdkit
from vhdkit.nbd import NbdServer
from vhdkit.nbd import protocol as P

MiB = 1 << 20


def connect(path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(str(path))
    hello = recv(s, P.HANDSHAKE.size)
    assert P.HANDSHAKE.unpack(hello)[:2] == (P.NBDMAGIC, P.IHAVEOPT)
    s.sendall(struct.pack(">I", P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES))
    return s


def recv(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        got = s.recv(n - len(out))
        if not got:
            return out
        out += got
    return out


def option(s: socket.socket, opt: int, data: bytes) -> tuple[int, bytes]:
    s.sendall(P.OPTION_HEADER.pack(P.IHAVEOPT, opt, len(data)) + data)
    magic, echoed, kind, length = P.OPTION_REPLY.unpack(recv(s, P.OPTION_REPLY.size))
    assert magic == P.OPTION_REPLY_MAGIC and echoed == opt
    return kind, recv(s, length)


def go(s: socket.socket) -> None:
    kind, _ = option(s, P.OPT_GO, struct.pack(">I", 0) + struct.pack(">H", 0))
    while kind == P.REP_INFO:
        magic, _, kind, length = P.OPTION_REPLY.unpack(recv(s, P.OPTION_REPLY.size))
        recv(s, length)
    assert kind == P.REP_ACK


def test_bad_clients_are_answered_or_dropped_and_others_still_served(tmp_path):
    disk = vhdkit.create(tmp_path / "d.vhdx", 8 * MiB)
    server = NbdServer(disk).listen(f"unix:{tmp_path / 's.sock'}").start()
    sock = tmp_path / "s.sock"
    try:
        s = connect(sock)  # an unknown option, and malformed GO data: error replies, not a hang-up
        assert option(s, 99, b"")[0] == P.REP_ERR_UNSUP
        assert option(s, P.OPT_GO, b"\x00\x00\x00\x10abc")[0] == P.REP_ERR_INVALID
        assert option(s, P.OPT_SET_META_CONTEXT, b"")[0] == P.REP_ERR_INVALID  # before structured replies
        s.close()
        s = connect(sock)  # option data past the bound: hung up on
        s.sendall(P.OPTION_HEADER.pack(P.IHAVEOPT, P.OPT_GO, 1 << 30))
        assert recv(s, 1) == b""
        s.close()
        s = connect(sock)  # in transmission: out of range is EINVAL, a bad magic ends it
        go(s)
        s.sendall(P.REQUEST.pack(P.REQUEST_MAGIC, 0, P.CMD_READ, 7, 8 * MiB, 4096))
        magic, error, cookie = P.SIMPLE_REPLY.unpack(recv(s, P.SIMPLE_REPLY.size))
        assert (magic, error, cookie) == (P.SIMPLE_REPLY_MAGIC, P.EINVAL, 7)
        s.sendall(P.REQUEST.pack(P.REQUEST_MAGIC, 0, P.CMD_WRITE, 8, 0, 5) + b"hello")
        assert P.SIMPLE_REPLY.unpack(recv(s, P.SIMPLE_REPLY.size))[1:] == (0, 8)
        s.sendall(P.REQUEST.pack(P.REQUEST_MAGIC, 0, P.CMD_WRITE, 9, 0, P.MAX_REQUEST + 1))
        assert recv(s, 1) == b""  # a 32 MiB+ payload is not read: hung up on
        s.close()
        s = connect(sock)
        go(s)
        s.sendall(b"\x00" * P.REQUEST.size)
        assert recv(s, 1) == b""
        s.close()
        s = connect(sock)  # and a well-behaved client after all that
        go(s)
        s.sendall(P.REQUEST.pack(P.REQUEST_MAGIC, 0, P.CMD_READ, 1, 0, 5))
        assert P.SIMPLE_REPLY.unpack(recv(s, P.SIMPLE_REPLY.size))[1] == 0 and recv(s, 5) == b"hello"
        s.sendall(P.REQUEST.pack(P.REQUEST_MAGIC, 0, P.CMD_DISC, 2, 0, 0))
        s.close()
    finally:
        server.stop()
        disk.close()


def test_a_tcp_export_on_loopback_serves_an_outside_client(tmp_path):
    from ..conftest import run

    disk = vhdkit.create(tmp_path / "t.vhdx", 8 * MiB)
    disk.pwrite(MiB, b"over tcp")
    server = NbdServer(disk).listen("tcp:127.0.0.1:0").start()  # port 0: the kernel picks one
    try:
        host, port = server.address
        info = run("nbdinfo", "--size", f"nbd://{host}:{port}")
        assert int(info.stdout) == 8 * MiB
        copy = tmp_path / "copy.raw"
        run("nbdcopy", f"nbd://{host}:{port}", copy)
        assert copy.read_bytes()[MiB : MiB + 8] == b"over tcp"
    finally:
        server.stop()
        disk.close()
