"""An NBD server exporting one disk, so real outside programs can be the guest.

Fixed newstyle handshake (NBD_OPT_GO / INFO / EXPORT_NAME / LIST / ABORT, structured replies,
the ``base:allocation`` metadata context), then READ, WRITE (with FUA), FLUSH, TRIM, WRITE_ZEROES,
CACHE and BLOCK_STATUS. Every request goes through a GuestDisk, so a mirror job running in the
same process sees the writes and can switch the export to another disk under the client's feet.
One thread per connection; requests on a connection are served in order.

Fit to leave loopback (as qemu-nbd): TLS by NBD_OPT_STARTTLS with the ssl module, the client
proving itself with a certificate the given CA signed (and, if names are given, one of those
names); with TLS configured every option before STARTTLS is refused (the spec's "forced TLS"). A
TCP address off this machine without TLS is refused unless ``insecure``. The export answers to
its name only (``export_name``, default ""). At most ``max_clients`` connections (default 1, as
qemu-nbd); the next waits for a slot. A client must finish its handshake within
``handshake_limit`` seconds. Bounds: option data ≤ 64 KiB, reads and writes ≤ 32 MiB, moved in
1 MiB pieces (a connection holds about 1 MiB however it pipelines); a client that breaks the
protocol is disconnected, never trusted.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from typing import TYPE_CHECKING, Any, Sequence

from ..disk import ExtentState, VirtualDisk
from ..errors import ReadOnlyError, VhdkitError
from ..guest import GuestDisk
from . import protocol as P
from .listen import ListenError, bind_unix_private, is_loopback

if TYPE_CHECKING:
    import ssl


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
    def __init__(self, disk: GuestDisk | VirtualDisk, *, read_only: bool = False, description: str = "",
                 export_name: str = "", tls: ssl.SSLContext | None = None, tls_clients: Sequence[str] = (),
                 max_clients: int = 1, handshake_limit: float = 10.0) -> None:
        """``tls``: a server context (see nbd.tls); ``tls_clients``: client certificate
        common names allowed (empty: any the context accepts)."""
        if max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, not {max_clients}")
        if not handshake_limit > 0:
            raise ValueError(f"handshake_limit must be a positive number of seconds, not {handshake_limit}")
        self.disk = disk if isinstance(disk, GuestDisk) else GuestDisk(disk)
        self.read_only = read_only or not self.disk.writable
        self.description = description
        self.export_name = export_name
        self.tls = tls
        self.tls_clients = frozenset(tls_clients)
        self.max_clients = max_clients
        self.handshake_limit = handshake_limit
        self._slots = threading.BoundedSemaphore(max_clients)
        self._listener: socket.socket | None = None
        self._unix_path: str | None = None
        self._threads: list[threading.Thread] = []
        self._sessions: set[_Session] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # -- life ----------------------------------------------------------------------------------
    def listen(self, address: str, *, insecure: bool = False) -> "NbdServer":
        """Listen at ``address``; a TCP address off this machine needs TLS, or ``insecure``."""
        family, where = parse_address(address)
        if family == socket.AF_UNIX:
            self._listener = bind_unix_private(where)
            self._unix_path = where
            return self
        if self.tls is None and not insecure and not is_loopback(where[0]):
            raise ListenError(f"{where[0]} is not a loopback address: the export would be readable and writable "
                              "by anyone on the network. Give TLS credentials (--tls-creds), or --insecure")
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(where)
            sock.listen(16)
        except OSError as e:
            sock.close()
            raise ListenError(f"cannot listen at {address}: {e.strerror}") from e
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
            if not self._slots.acquire(timeout=0.5):  # all taken: the next client waits its turn
                continue
            try:
                conn, _ = self._listener.accept()
            except OSError:
                self._slots.release()
                break
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Under the lock stop() takes to end the sessions and list the threads: a connection
            # is either known to it (its session ended, its thread started) or never served.
            with self._lock:
                if self._stopping.is_set():
                    conn.close()
                    self._slots.release()
                    break
                session = _Session(self, conn)
                self._sessions.add(session)
                thread = threading.Thread(target=self._serve, args=(session,), name="vhdkit-nbd-conn", daemon=True)
                thread.start()
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]

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
            for session in list(self._sessions):
                try:
                    session.conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)
        if self._unix_path:
            try:
                os.unlink(self._unix_path)
            except FileNotFoundError:
                pass
        try:
            self.disk.flush()
        except (VhdkitError, OSError, ValueError):
            pass

    # -- one connection ------------------------------------------------------------------------
    def _serve(self, session: _Session) -> None:
        conn = session.conn
        try:
            conn.settimeout(self.handshake_limit)  # a client that never finishes holds no slot for long
            if session.handshake():
                session.conn.settimeout(None)
                session.transmission()
        except (ProtocolError, ConnectionError, OSError):  # (ssl.SSLError and socket.timeout are OSErrors)
            pass
        finally:
            with self._lock:
                self._sessions.discard(session)
            session.conn.close()
            conn.close()
            self._slots.release()


class _Session:
    def __init__(self, server: NbdServer, conn: socket.socket) -> None:
        self.server = server
        self.disk = server.disk
        self.conn = conn
        self.structured = False
        self.meta_context: int | None = None  # id of base:allocation once selected
        self.no_zeroes = False
        self.secured = False  # STARTTLS done

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
            if self.server.tls is not None and not self.secured and option not in (P.OPT_STARTTLS, P.OPT_ABORT):
                if option == P.OPT_EXPORT_NAME:  # no way to answer it with an error: hang up
                    raise ProtocolError("NBD_OPT_EXPORT_NAME before TLS")
                self.reply(option, P.REP_ERR_TLS_REQD, b"this server requires TLS: NBD_OPT_STARTTLS first")
                continue
            if option == P.OPT_STARTTLS:
                self.start_tls(data)
                continue
            if option == P.OPT_EXPORT_NAME:
                if data.decode("utf-8", "replace") != self.server.export_name:
                    raise ProtocolError("no such export")  # the option has no error reply: hang up
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
                name = self.server.export_name.encode()
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

    def start_tls(self, data: bytes) -> None:
        """NBD_OPT_STARTTLS: acknowledge, then the TLS handshake, then the client's certificate."""
        if self.server.tls is None:
            self.reply(P.OPT_STARTTLS, P.REP_ERR_UNSUP, b"TLS is not configured on this server")
            return
        if data or self.secured:
            self.reply(P.OPT_STARTTLS, P.REP_ERR_INVALID, b"STARTTLS takes no data, once")
            return
        from .tls import common_name  # (ssl is loaded only where TLS is used)

        self.reply(P.OPT_STARTTLS, P.REP_ACK)
        self.conn = self.server.tls.wrap_socket(self.conn, server_side=True)  # CERT_REQUIRED: verified here
        self.secured = True
        allowed = self.server.tls_clients
        if allowed and common_name(self.conn.getpeercert()) not in allowed:
            raise ProtocolError("the client certificate's name is not among those allowed")

    def reply(self, option: int, kind: int, data: bytes = b"") -> None:
        self.conn.sendall(P.OPTION_REPLY.pack(P.OPTION_REPLY_MAGIC, option, kind, len(data)) + data)

    def transmission_flags(self) -> int:
        flags = (P.FLAG_HAS_FLAGS | P.FLAG_SEND_FLUSH | P.FLAG_SEND_FUA | P.FLAG_SEND_TRIM
                 | P.FLAG_SEND_WRITE_ZEROES | P.FLAG_SEND_DF | P.FLAG_SEND_CACHE)
        if self.server.max_clients > 1:
            flags |= P.FLAG_CAN_MULTI_CONN
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
        name = data[4 : 4 + name_length].decode("utf-8", "replace")
        if name != self.server.export_name:
            self.reply(option, P.REP_ERR_UNKNOWN, f"no export named {name[:200]!r} here".encode())
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
            if kind == P.CMD_WRITE and length > P.MAX_REQUEST:
                raise ProtocolError(f"a write of {length} bytes")  # cannot skip it safely: hang up
            refusal = None
            if kind in (P.CMD_READ, P.CMD_WRITE, P.CMD_TRIM, P.CMD_WRITE_ZEROES, P.CMD_CACHE, P.CMD_BLOCK_STATUS):
                if offset + length > size or (kind == P.CMD_READ and length > P.MAX_REQUEST):
                    refusal = (P.EINVAL, "outside the export")
            if refusal is None and self.server.read_only and kind in (P.CMD_WRITE, P.CMD_TRIM, P.CMD_WRITE_ZEROES):
                refusal = (P.EPERM, "the export is read-only")
            if refusal is not None:
                if kind == P.CMD_WRITE:
                    self.drain(length)
                self.error(cookie, *refusal)
                continue
            try:
                self.command(kind, flags, cookie, offset, length)
            except ReadOnlyError as e:
                self.error(cookie, P.EPERM, str(e))
            except (ValueError, struct.error) as e:
                self.error(cookie, P.EINVAL, str(e))
            except (VhdkitError, OSError) as e:
                errno = P.ENOSPC if getattr(e, "errno", None) == 28 or "space" in str(e) else P.EIO
                self.error(cookie, errno, str(e))

    def drain(self, n: int) -> None:
        """Receive and drop ``n`` bytes (a refused write's payload), a piece at a time."""
        while n:
            n -= len(self.recv_exact(min(n, P.IO_CHUNK)))

    def command(self, kind: int, flags: int, cookie: int, offset: int, length: int) -> None:
        fua = bool(flags & P.CMD_FLAG_FUA)
        if kind == P.CMD_READ:
            self.read(cookie, offset, length)
            return
        if kind == P.CMD_WRITE:
            self.write(offset, length, fua)
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

    def read(self, cookie: int, offset: int, length: int) -> None:
        """A read, sent a piece at a time. The first piece is read before anything is sent, so
        its failure is an ordinary error reply; a later one ends a structured reply with an
        error chunk, and a simple reply (which has no way to say it) with the connection."""
        buf = bytearray(min(length, P.IO_CHUNK))
        first = memoryview(buf)[: min(length, P.IO_CHUNK)]
        self.disk.preadinto(offset, first)
        if self.structured:
            self.conn.sendall(P.STRUCTURED_REPLY.pack(P.STRUCTURED_REPLY_MAGIC, P.REPLY_FLAG_DONE,
                                                      P.REPLY_TYPE_OFFSET_DATA, cookie, 8 + length)
                              + struct.pack(">Q", offset))
        else:
            self.conn.sendall(P.SIMPLE_REPLY.pack(P.SIMPLE_REPLY_MAGIC, 0, cookie))
        self.conn.sendall(first)
        done = len(first)
        while done < length:
            piece = memoryview(buf)[: min(length - done, P.IO_CHUNK)]
            try:
                self.disk.preadinto(offset + done, piece)
            except (VhdkitError, OSError) as e:
                raise ProtocolError(f"a read failed after its reply began: {e}") from e
            self.conn.sendall(piece)
            done += len(piece)

    def write(self, offset: int, length: int, fua: bool) -> None:
        """A write, taken and written a piece at a time; after a failed piece the rest of the
        payload is still received (and dropped) so the connection stays in step."""
        done = 0
        failure: BaseException | None = None
        while done < length:
            piece = self.recv_exact(min(length - done, P.IO_CHUNK))
            if failure is None:
                try:
                    self.disk.pwrite(offset + done, piece, fua=fua)
                except (VhdkitError, ValueError, OSError) as e:
                    failure = e
            done += len(piece)
        if failure is not None:
            raise failure

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
