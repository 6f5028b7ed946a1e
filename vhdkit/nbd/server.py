"""An NBD server exporting one disk, so real outside programs can be the guest.

Fixed newstyle handshake (NBD_OPT_GO / INFO / EXPORT_NAME / LIST / ABORT, structured replies,
the ``base:allocation`` metadata context), then READ, WRITE (with FUA), FLUSH, TRIM, WRITE_ZEROES,
CACHE and BLOCK_STATUS. Every request goes through a GuestDisk, so a mirror job running in the
same process sees the writes and can switch the export to another disk under the client's feet.
One thread per connection; requests on a connection are served in order. Any export name is
accepted (there is one export). Bounds: option data ≤ 64 KiB, reads and writes ≤ 32 MiB; a
client that breaks the protocol is disconnected, never trusted.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from typing import Any

from ..disk import ExtentState, VirtualDisk
from ..errors import ReadOnlyError, VhdkitError
from ..guest import GuestDisk
from . import protocol as P


class ProtocolError(Exception):
    """The client broke the protocol: the connection ends."""


def parse_address(address: str) -> tuple[int, Any]:
    """``unix:PATH`` or ``tcp:HOST:PORT`` -> (family, sockaddr)."""
    kind, _, rest = address.partition(":")
    if kind == "unix" and rest:
        return socket.AF_UNIX, rest
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if host and port.isdigit():
            return socket.AF_INET, (host, int(port))
    raise ValueError(f"an NBD address is unix:PATH or tcp:HOST:PORT, not {address!r}")


class NbdServer:
    def __init__(self, disk: GuestDisk | VirtualDisk, *, read_only: bool = False, description: str = "") -> None:
        self.disk = disk if isinstance(disk, GuestDisk) else GuestDisk(disk)
        self.read_only = read_only or not self.disk.writable
        self.description = description
        self._listener: socket.socket | None = None
        self._unix_path: str | None = None
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # -- life ----------------------------------------------------------------------------------
    def listen(self, address: str) -> "NbdServer":
        family, where = parse_address(address)
        sock = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_UNIX:
            if os.path.exists(where):
                os.unlink(where)  # a socket left by a server that died
            self._unix_path = where
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen(16)
        self._listener = sock
        return self

    @property
    def address(self) -> Any:
        assert self._listener is not None
        return self._listener.getsockname()

    def start(self) -> "NbdServer":
        """Accept connections on a background thread."""
        thread = threading.Thread(target=self.serve_forever, name="vhdkit-nbd-accept", daemon=True)
        thread.start()
        return self

    def serve_forever(self) -> None:
        assert self._listener is not None, "listen() first"
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                break
            if self._stopping.is_set():
                conn.close()
                break
            if conn.family == socket.AF_INET:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), name="vhdkit-nbd-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Stop accepting, end every connection, flush the disk."""
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        with self._lock:
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in self._threads:
            thread.join(5)
        if self._unix_path and os.path.exists(self._unix_path):
            os.unlink(self._unix_path)
        try:
            self.disk.flush()
        except (VhdkitError, OSError, ValueError):
            pass

    # -- one connection ------------------------------------------------------------------------
    def _serve(self, conn: socket.socket) -> None:
        try:
            session = _Session(self, conn)
            if session.handshake():
                session.transmission()
        except (ProtocolError, ConnectionError, OSError):
            pass
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()


class _Session:
    def __init__(self, server: NbdServer, conn: socket.socket) -> None:
        self.server = server
        self.disk = server.disk
        self.conn = conn
        self.structured = False
        self.meta_context: int | None = None  # id of base:allocation once selected
        self.no_zeroes = False

    # -- bytes ---------------------------------------------------------------------------------
    def recv_exact(self, n: int) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.conn.recv_into(view[got:])
            if not k:
                raise ConnectionError("the client went away")
            got += k
        return buf

    # -- handshake -----------------------------------------------------------------------------
    def handshake(self) -> bool:
        """Option haggling; True when transmission begins."""
        self.conn.sendall(P.HANDSHAKE.pack(P.NBDMAGIC, P.IHAVEOPT, P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES))
        (client_flags,) = struct.unpack(">I", self.recv_exact(4))
        if not client_flags & P.FLAG_C_FIXED_NEWSTYLE:
            raise ProtocolError("only fixed newstyle clients are served")
        self.no_zeroes = bool(client_flags & P.FLAG_C_NO_ZEROES)
        while True:
            magic, option, length = P.OPTION_HEADER.unpack(self.recv_exact(P.OPTION_HEADER.size))
            if magic != P.IHAVEOPT:
                raise ProtocolError("bad option magic")
            if length > P.MAX_OPTION_LENGTH:
                raise ProtocolError(f"option data of {length} bytes")
            data = bytes(self.recv_exact(length))
            if option == P.OPT_EXPORT_NAME:
                flags = self.transmission_flags()
                self.conn.sendall(struct.pack(">QH", self.disk.size, flags) + (b"" if self.no_zeroes else bytes(124)))
                return True
            if option == P.OPT_ABORT:
                self.reply(option, P.REP_ACK)
                return False
            if option in (P.OPT_INFO, P.OPT_GO):
                if self.info(option, data) and option == P.OPT_GO:
                    return True
            elif option == P.OPT_LIST:
                name = b""
                self.reply(option, P.REP_SERVER, struct.pack(">I", len(name)) + name)
                self.reply(option, P.REP_ACK)
            elif option == P.OPT_STRUCTURED_REPLY:
                if data:
                    self.reply(option, P.REP_ERR_INVALID, b"no data goes with this option")
                else:
                    self.structured = True
                    self.reply(option, P.REP_ACK)
            elif option in (P.OPT_LIST_META_CONTEXT, P.OPT_SET_META_CONTEXT):
                self.meta(option, data)
            else:
                self.reply(option, P.REP_ERR_UNSUP, b"not supported by this server")

    def reply(self, option: int, kind: int, data: bytes = b"") -> None:
        self.conn.sendall(P.OPTION_REPLY.pack(P.OPTION_REPLY_MAGIC, option, kind, len(data)) + data)

    def transmission_flags(self) -> int:
        flags = (P.FLAG_HAS_FLAGS | P.FLAG_SEND_FLUSH | P.FLAG_SEND_FUA | P.FLAG_SEND_TRIM
                 | P.FLAG_SEND_WRITE_ZEROES | P.FLAG_SEND_DF | P.FLAG_CAN_MULTI_CONN | P.FLAG_SEND_CACHE)
        if self.server.read_only:
            flags |= P.FLAG_READ_ONLY
        return flags

    def info(self, option: int, data: bytes) -> bool:
        try:
            (name_length,) = struct.unpack_from(">I", data)
            (count,) = struct.unpack_from(">H", data, 4 + name_length)
            requests = struct.unpack_from(f">{count}H", data, 6 + name_length)
            if 6 + name_length + 2 * count != len(data):
                raise struct.error("length mismatch")
        except struct.error:
            self.reply(option, P.REP_ERR_INVALID, b"malformed NBD_OPT_INFO/GO data")
            return False
        self.reply(option, P.REP_INFO, struct.pack(">HQH", P.INFO_EXPORT, self.disk.size, self.transmission_flags()))
        if P.INFO_BLOCK_SIZE in requests:
            self.reply(option, P.REP_INFO, struct.pack(">HIII", P.INFO_BLOCK_SIZE, 1, 4096, P.MAX_REQUEST))
        if P.INFO_DESCRIPTION in requests and self.server.description:
            self.reply(option, P.REP_INFO, struct.pack(">H", P.INFO_DESCRIPTION) + self.server.description.encode())
        self.reply(option, P.REP_ACK)
        return True

    def meta(self, option: int, data: bytes) -> None:
        if not self.structured:
            self.reply(option, P.REP_ERR_INVALID, b"negotiate structured replies first")
            return
        try:
            (name_length,) = struct.unpack_from(">I", data)
            at = 4 + name_length
            (count,) = struct.unpack_from(">I", data, at)
            at += 4
            queries = []
            for _ in range(count):
                (n,) = struct.unpack_from(">I", data, at)
                queries.append(data[at + 4 : at + 4 + n].decode())
                at += 4 + n
            if at != len(data):
                raise struct.error("length mismatch")
        except (struct.error, UnicodeDecodeError):
            self.reply(option, P.REP_ERR_INVALID, b"malformed meta context request")
            return
        listing = option == P.OPT_LIST_META_CONTEXT
        wanted = any(q == P.BASE_ALLOCATION or (listing and q == "base:") for q in queries) or (listing and not queries)
        if option == P.OPT_SET_META_CONTEXT:
            self.meta_context = 1 if wanted else None
        if wanted:
            context_id = 0 if listing else 1
            self.reply(option, P.REP_META_CONTEXT, struct.pack(">I", context_id) + P.BASE_ALLOCATION.encode())
        self.reply(option, P.REP_ACK)

    # -- transmission --------------------------------------------------------------------------
    def transmission(self) -> None:
        size = self.disk.size
        while True:
            magic, flags, kind, cookie, offset, length = P.REQUEST.unpack(self.recv_exact(P.REQUEST.size))
            if magic != P.REQUEST_MAGIC:
                raise ProtocolError("bad request magic")
            if kind == P.CMD_DISC:
                self.disk.flush()
                return
            payload = None
            if kind == P.CMD_WRITE:
                if length > P.MAX_REQUEST:
                    raise ProtocolError(f"a write of {length} bytes")  # cannot skip it safely: hang up
                payload = self.recv_exact(length)
            if kind in (P.CMD_READ, P.CMD_WRITE, P.CMD_TRIM, P.CMD_WRITE_ZEROES, P.CMD_CACHE, P.CMD_BLOCK_STATUS):
                if offset + length > size or (kind == P.CMD_READ and length > P.MAX_REQUEST):
                    self.error(cookie, P.EINVAL, "outside the export")
                    continue
            if self.server.read_only and kind in (P.CMD_WRITE, P.CMD_TRIM, P.CMD_WRITE_ZEROES):
                self.error(cookie, P.EPERM, "the export is read-only")
                continue
            try:
                self.command(kind, flags, cookie, offset, length, payload)
            except ReadOnlyError as e:
                self.error(cookie, P.EPERM, str(e))
            except (ValueError, struct.error) as e:
                self.error(cookie, P.EINVAL, str(e))
            except (VhdkitError, OSError) as e:
                errno = P.ENOSPC if getattr(e, "errno", None) == 28 or "space" in str(e) else P.EIO
                self.error(cookie, errno, str(e))

    def command(self, kind: int, flags: int, cookie: int, offset: int, length: int, payload: bytearray | None) -> None:
        fua = bool(flags & P.CMD_FLAG_FUA)
        if kind == P.CMD_READ:
            buf = bytearray(length)
            self.disk.preadinto(offset, buf)
            if self.structured:
                header = P.STRUCTURED_REPLY.pack(P.STRUCTURED_REPLY_MAGIC, P.REPLY_FLAG_DONE, P.REPLY_TYPE_OFFSET_DATA,
                                                 cookie, 8 + length)
                self.conn.sendall(header + struct.pack(">Q", offset))
            else:
                self.conn.sendall(P.SIMPLE_REPLY.pack(P.SIMPLE_REPLY_MAGIC, 0, cookie))
            self.conn.sendall(buf)  # a second send rather than a copy of up to 32 MiB
            return
        if kind == P.CMD_WRITE:
            assert payload is not None
            self.disk.pwrite(offset, payload, fua=fua)
        elif kind == P.CMD_FLUSH:
            self.disk.flush()
        elif kind == P.CMD_TRIM:
            self.disk.discard(offset, length)
            if fua:
                self.disk.flush()
        elif kind == P.CMD_WRITE_ZEROES:
            if flags & P.CMD_FLAG_FAST_ZERO:
                self.error(cookie, P.ENOTSUP, "zeroing is not faster than writing here")
                return
            self.disk.write_zeroes(offset, length, fua=fua)
        elif kind == P.CMD_CACHE:
            pass
        elif kind == P.CMD_BLOCK_STATUS:
            self.block_status(flags, cookie, offset, length)
            return
        else:
            self.error(cookie, P.EINVAL, f"unknown command {kind}")
            return
        self.ok(cookie)

    def block_status(self, flags: int, cookie: int, offset: int, length: int) -> None:
        if not self.structured or self.meta_context is None:
            self.error(cookie, P.EINVAL, "no metadata context was selected")
            return
        descriptors = bytearray()
        count = 0
        for ext in self.disk.extents(offset, length):
            state = 0 if ext.state is ExtentState.DATA else P.STATE_HOLE | P.STATE_ZERO
            if ext.state is ExtentState.ZERO:
                state = P.STATE_ZERO | P.STATE_HOLE
            n = min(ext.length, 0xFFFFF000)  # a descriptor length is 32 bits
            descriptors += struct.pack(">II", n, state)
            count += 1
            if flags & P.CMD_FLAG_REQ_ONE or count >= 1024:
                break
        header = P.STRUCTURED_REPLY.pack(P.STRUCTURED_REPLY_MAGIC, P.REPLY_FLAG_DONE, P.REPLY_TYPE_BLOCK_STATUS,
                                         cookie, 4 + len(descriptors))
        self.conn.sendall(header + struct.pack(">I", self.meta_context) + descriptors)

    def ok(self, cookie: int) -> None:
        if self.structured:
            self.conn.sendall(P.STRUCTURED_REPLY.pack(P.STRUCTURED_REPLY_MAGIC, P.REPLY_FLAG_DONE, P.REPLY_TYPE_NONE,
                                                      cookie, 0))
        else:
            self.conn.sendall(P.SIMPLE_REPLY.pack(P.SIMPLE_REPLY_MAGIC, 0, cookie))

    def error(self, cookie: int, errno: int, message: str) -> None:
        if self.structured:
            text = message.encode()[:4096]
            self.conn.sendall(P.STRUCTURED_REPLY.pack(P.STRUCTURED_REPLY_MAGIC, P.REPLY_FLAG_DONE, P.REPLY_TYPE_ERROR,
                                                      cookie, 6 + len(text)) + struct.pack(">IH", errno, len(text)) + text)
        else:
            self.conn.sendall(P.SIMPLE_REPLY.pack(P.SIMPLE_REPLY_MAGIC, errno, cookie))


def serve(disk: VirtualDisk, address: str) -> NbdServer:
    """Export ``disk`` at ``address`` on a background thread; ``stop()`` the result to end it."""
    return NbdServer(disk).listen(address).start()
