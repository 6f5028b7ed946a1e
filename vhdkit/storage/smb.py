"""An image on an SMB 3 share, as a Store: ``smb://[user@]host[:port]/share/path/disk.vhdx``.

Credentials come from the arguments, else the environment (VHDKIT_SMB_USER, VHDKIT_SMB_PASSWORD),
else a credentials file (VHDKIT_SMB_CREDENTIALS: ``username = ...`` / ``password = ...`` lines, as
smbclient's ``-A`` reads). A password in the URL is accepted but never kept in ``url``; no
password appears in a message, an exception or a log line: every error names the store by its
redacted URL.

Facts this relies on (specs/smb.md, measured against Samba 4.17): requests of 1 MiB are the
fastest through smbprotocol; ``port=`` must go with every smbclient call; a writer opens with
share access "r" (readers may come, a second writer is refused: the share-mode twin of the
advisory lock a local writer takes); sparse files need FSCTL_SET_SPARSE; read and write errors
arrive as SMBResponseException, not OSError.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import struct
import threading

from ..errors import ImageExistsError, ImageInUseError, ImageNotFoundError, StorageError
from .base import BaseStore, _check_range, redact

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator

CHUNK = 1 << 20
DEFAULT_PORT = 445
_STATUS_SHARING_VIOLATION = 0xC0000043
_STATUS_OBJECT_NAME_COLLISION = 0xC0000035
_STATUS_DISK_FULL = 0xC000007F
_FSCTL_SET_SPARSE = 0x000900C4
_FSCTL_SET_ZERO_DATA = 0x000980C8
_FSCTL_QUERY_ALLOCATED_RANGES = 0x000940CF
_FSCTL_SRV_REQUEST_RESUME_KEY = 0x00140078
_FSCTL_SRV_COPYCHUNK_WRITE = 0x001480F2
_COPYCHUNK_BYTES = 1 << 20  # the largest chunk servers take (MS-SMB2 3.3.3: ServerSideCopyMaxChunkSize)
_COPYCHUNK_COUNT = 16  # chunks per request (ServerSideCopyMaxNumberofChunks)
_FILE_ALLOCATION_INFORMATION = 19  # MS-FSCC 2.4.4: the space reserved for a file, in bytes


_KNOWN_PASSWORDS: dict[tuple[str, int, str], str] = {}


_SEALED_SERVERS: dict[tuple[str, int], int] = {}  # (host, port) -> how many callers require encryption
# Encrypted sessions live in a pool of their own: smbclient's shared pool hands back an existing
# session for the same user as it is, so asking it for encryption afterwards changes nothing.
_SEALED_POOL: dict[str, Any] = {}


_WARNED: list[bool] = []


def _warn_password_in_url() -> None:
    """Once per process: a password given in a URL is visible to every user of the machine."""
    if not _WARNED:
        _WARNED.append(True)
        import sys

        print("vhdkit: warning: a password in an smb:// URL is visible in the process list; give it in "
              "VHDKIT_SMB_PASSWORD or a credentials file (VHDKIT_SMB_CREDENTIALS) instead", file=sys.stderr)


def remember_password(host: str, port: int, username: str, password: str) -> None:
    """Let every later smb:// URL for this server and user find its password (kept in this process
    only): how a placement's identity reaches the vhdkit.create/open calls it makes."""
    _KNOWN_PASSWORDS[(host, port, username)] = password


@contextlib.contextmanager
def encryption_required(host: str, port: int = DEFAULT_PORT) -> Iterator[None]:
    """While inside, every smb:// URL for this server is opened as with ``encrypt=True``: how a
    placement that must be encrypted reaches the vhdkit.create/open calls it makes."""
    key = (host.lower(), port)
    _SEALED_SERVERS[key] = _SEALED_SERVERS.get(key, 0) + 1
    try:
        yield
    finally:
        _SEALED_SERVERS[key] -= 1
        if not _SEALED_SERVERS[key]:
            del _SEALED_SERVERS[key]


@atexit.register
def _close_sealed_pool() -> None:
    if _SEALED_POOL:
        import smbclient

        smbclient.reset_connection_cache(fail_on_error=False, connection_cache=_SEALED_POOL)


class SmbLocation:
    """A parsed smb:// URL with its credentials resolved (the password stays out of ``url``)."""

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None,
                 encrypt: bool | None = None) -> None:
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(url)
        if parts.scheme != "smb" or not parts.hostname:
            raise StorageError(f"not an smb://host/share/path URL: {redact(url)}")
        segments = [unquote(s) for s in parts.path.split("/") if s]
        if not segments:
            raise StorageError(f"the URL names no share: {redact(url)}")
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORT
        self.share = segments[0]
        self.path = "\\".join(segments[1:])
        creds = _credentials_file()
        self.username = (username or (unquote(parts.username) if parts.username else None)
                         or os.environ.get("VHDKIT_SMB_USER") or creds.get("username"))
        if parts.password:
            _warn_password_in_url()
        self.password = (password or (unquote(parts.password) if parts.password else None)
                         or _KNOWN_PASSWORDS.get((self.host, self.port, self.username or ""))
                         or os.environ.get("VHDKIT_SMB_PASSWORD") or creds.get("password"))
        # encryption: asked for here, or for this server earlier, or by VHDKIT_SMB_ENCRYPT=1
        self.encrypt = encrypt if encrypt is not None else (
            (self.host.lower(), self.port) in _SEALED_SERVERS
            or os.environ.get("VHDKIT_SMB_ENCRYPT", "").lower() in ("1", "yes", "true", "required"))
        self._connected = False
        user = f"{self.username}@" if self.username else ""
        port = f":{self.port}" if self.port != DEFAULT_PORT else ""
        self.url = f"smb://{user}{self.host}{port}/{'/'.join(segments)}"

    @property
    def unc(self) -> str:
        return rf"\\{self.host}\{self.share}" + (f"\\{self.path}" if self.path else "")

    def connect(self) -> None:
        import smbclient

        try:
            session = smbclient.register_session(self.host, username=self.username, password=self.password,
                                                 port=self.port, encrypt=self.encrypt or None, connection_timeout=10,
                                                 **self._pool())
        except Exception as e:  # noqa: BLE001 - smbprotocol raises many kinds; none may leak a password
            if self.encrypt:
                self._drop_sealed()
                if "encrypt" in str(e).lower():
                    raise StorageError(f"{self.url}: the server does not offer SMB 3 encryption, which was "
                                       "required") from None
            raise StorageError(f"cannot connect to {self.url}: {_safe(e, self.password)}") from None
        if self.encrypt and not session.encrypt_data:  # never send a byte in the clear when asked not to
            self._drop_sealed()
            raise StorageError(f"{self.url}: the server does not offer SMB 3 encryption, which was required")
        self._connected = True

    def _drop_sealed(self) -> None:
        """Forget a failed encrypted connection, so the pool never holds a half-made session."""
        for key in [k for k in _SEALED_POOL if k.lower() == f"{self.host}:{self.port}".lower()]:
            connection = _SEALED_POOL.pop(key)
            try:
                connection.disconnect(True)
            except Exception:  # noqa: BLE001 - it failed already; closing is tidying up
                pass

    def _pool(self) -> dict[str, Any]:
        return {"connection_cache": _SEALED_POOL} if self.encrypt else {}

    @property
    def options(self) -> dict[str, Any]:
        """Keyword arguments for smbclient calls on this server. An encrypted location connects
        first: smbclient would otherwise put an unencrypted session of its own into the pool."""
        if self.encrypt and not self._connected:
            self.connect()
        return {**self.credentials, **self._pool()}

    @property
    def credentials(self) -> dict[str, Any]:
        """Who to log in as, for smbclient calls given a connection cache of their own."""
        return {"port": self.port, "username": self.username, "password": self.password}


class SmbStore(BaseStore):
    def __init__(self, url: str, *, writable: bool = False, create: bool = False, username: str | None = None,
                 password: str | None = None, encrypt: bool | None = None) -> None:
        import smbclient

        self.location = SmbLocation(url, username=username, password=password, encrypt=encrypt)
        self.url = self.location.url
        self.writable = writable or create
        self.sparse = create  # a new file is made sparse; preallocate() makes it a reserved one
        self._lock = threading.Lock()
        self.location.connect()
        mode = "x+b" if create else ("r+b" if self.writable else "rb")  # "+": FSCTLs need read access too
        try:
            # buffering=0: every read/write is one SMB request of our size; "r": one writer only
            self._file: Any = smbclient.open_file(self.location.unc, mode, buffering=0,
                                                  share_access="r" if self.writable else "rw",
                                                  **self.location.options)
            self._size = smbclient.stat(self.location.unc, **self.location.options).st_size
        except Exception as e:  # noqa: BLE001
            raise self._error("cannot open", e) from None
        if create:
            self.set_sparse()

    def set_sparse(self) -> None:
        """Mark the file sparse (FSCTL_SET_SPARSE), so unwritten ranges take no space and the
        server reports allocated ranges exactly. (Samba drops the mark on rename: set it again.)"""
        self._fsctl(_FSCTL_SET_SPARSE, b"\x01")
        self.sparse = True

    def preallocate(self, offset: int, n: int) -> bool:
        """Reserve space for ``offset + n`` bytes (a fixed disk's data), as fallocate does locally:
        the file stops being sparse, its allocation size is set (MS-FSCC 2.4.4 — the server
        reserves it, or at least refuses with STATUS_DISK_FULL what does not fit: Samba checks its
        free space either way and fallocates with "strict allocate"), then its end of file moves."""
        self._check_writable()
        if self.sparse:
            self._fsctl(_FSCTL_SET_SPARSE, b"\x00")
            self.sparse = False
        end = offset + n
        self._set_info(_FILE_ALLOCATION_INFORMATION, struct.pack("<q", end), f"cannot reserve {n} bytes")
        if end > self._size:
            self.truncate(end)
        return True

    # -- the Store interface -----------------------------------------------------------------
    def preadinto(self, offset: int, buf: memoryview) -> int:
        _check_range(offset, len(buf))
        done = 0
        with self._lock:
            try:
                while done < len(buf):
                    self._file.seek(offset + done)
                    got = self._file.readinto(buf[done : done + CHUNK])
                    if not got:
                        break
                    done += got
            except Exception as e:  # noqa: BLE001
                raise self._error("read failed", e) from None
        return done

    def pwrite(self, offset: int, data: bytes | memoryview) -> int:
        self._check_writable()
        _check_range(offset, len(data))
        view = memoryview(data).cast("B")
        with self._lock:
            try:
                done = 0
                while done < len(view):
                    self._file.seek(offset + done)
                    done += self._file.write(view[done : done + CHUNK])
            except Exception as e:  # noqa: BLE001
                raise self._error("write failed", e) from None
            self._size = max(self._size, offset + len(view))
        return len(view)

    def size(self) -> int:
        return self._size

    def truncate(self, n: int) -> None:
        self._check_writable()
        with self._lock:
            try:
                self._file.truncate(n)
            except Exception as e:  # noqa: BLE001
                raise self._error("truncate failed", e) from None
            self._size = n

    def flush(self) -> None:
        if self.writable:
            with self._lock:
                try:
                    self._file.flush()  # SMB2 FLUSH: durable on the server
                except Exception as e:  # noqa: BLE001
                    raise self._error("flush failed", e) from None

    def close(self) -> None:
        file, self._file = getattr(self, "_file", None), None
        if file is not None:
            try:
                file.close()
            except Exception:  # noqa: BLE001 - closing a dead connection: nothing left to lose
                pass

    # -- sparse ------------------------------------------------------------------------------
    def punch(self, offset: int, n: int) -> None:
        """Deallocate (reads zeros after): FSCTL_SET_ZERO_DATA."""
        self._check_writable()
        self._fsctl(_FSCTL_SET_ZERO_DATA, struct.pack("<qq", offset, offset + n))

    def allocated_ranges(self) -> Iterator[tuple[int, int]]:
        """(offset, length) the server has space for: FSCTL_QUERY_ALLOCATED_RANGES."""
        out = self._fsctl(_FSCTL_QUERY_ALLOCATED_RANGES, struct.pack("<qq", 0, max(self._size, 1)), 64 * 1024)
        for i in range(0, len(out) - 15, 16):
            offset, length = struct.unpack_from("<qq", out, i)
            yield offset, length

    def allocated_bytes(self) -> int | None:
        return sum(length for _, length in self.allocated_ranges())

    # -- server-side copy ---------------------------------------------------------------------
    def copy_on_server(self, target: "SmbStore") -> int:
        """Copy this file into ``target`` (on the same server) without the data crossing the wire:
        FSCTL_SRV_REQUEST_RESUME_KEY here, then FSCTL_SRV_COPYCHUNK_WRITE there, for the allocated
        ranges only and with ``target`` made sparse first, since copy-chunk of a whole sparse file
        allocates every byte of it (specs/smb.md). Returns the bytes copied."""
        from smbprotocol.ioctl import SMB2SrvCopyChunk, SMB2SrvCopyChunkCopy, SMB2SrvRequestResumeKey

        if (self.location.host.lower(), self.location.port) != (target.location.host.lower(), target.location.port):
            raise StorageError(f"{self.url} and {target.url} are on different servers: no server-side copy")
        target._check_writable()
        resume = SMB2SrvRequestResumeKey()
        resume.unpack(self._fsctl(_FSCTL_SRV_REQUEST_RESUME_KEY, b"", 32))
        key = resume["resume_key"].get_value()
        target.set_sparse()
        target.truncate(self._size)
        chunks = []
        for offset, length in self.allocated_ranges():
            for at in range(offset, offset + length, _COPYCHUNK_BYTES):
                chunk = SMB2SrvCopyChunk()
                chunk["source_offset"] = chunk["target_offset"] = at
                chunk["length"] = min(_COPYCHUNK_BYTES, offset + length - at)
                chunks.append(chunk)
        for i in range(0, len(chunks), _COPYCHUNK_COUNT):
            request = SMB2SrvCopyChunkCopy()
            request["source_key"] = key
            request["chunks"] = chunks[i : i + _COPYCHUNK_COUNT]
            target._fsctl(_FSCTL_SRV_COPYCHUNK_WRITE, request.pack(), 32)
        target.flush()
        return sum(c["length"].get_value() for c in chunks)

    # -- inside ------------------------------------------------------------------------------
    def _fsctl(self, code: int, data: bytes, out: int = 0) -> bytes:
        from smbclient._io import SMBFileTransaction, ioctl_request  # specs/smb.md: the helper smbclient uses
        from smbprotocol.ioctl import IOCTLFlags

        with self._lock:
            try:
                with SMBFileTransaction(self._file) as tr:
                    ioctl_request(tr, code, output_size=out, flags=IOCTLFlags.SMB2_0_IOCTL_IS_FSCTL,
                                  input_buffer=data)
                result = tr.results[0]
            except Exception as e:  # noqa: BLE001
                raise self._error("FSCTL failed", e) from None
        return bytes(result or b"")

    def _set_info(self, info_class: int, data: bytes, what: str) -> None:
        """One SMB2 SET_INFO of a file information class (MS-SMB2 2.2.39) on this file."""
        from smbclient._io import SMBFileTransaction
        from smbprotocol.open import SMB2SetInfoRequest, SMB2SetInfoResponse

        request = SMB2SetInfoRequest()
        request["info_type"] = 1  # SMB2_0_INFO_FILE
        request["file_info_class"] = info_class
        request["file_id"] = self._file.fd.file_id
        request["buffer"] = data

        def receive(sent: Any) -> Any:
            response = SMB2SetInfoResponse()
            response.unpack(self._file.fd.connection.receive(sent)["data"].get_value())
            return response

        with self._lock:
            try:
                with SMBFileTransaction(self._file) as tr:
                    tr += (request, receive)
            except Exception as e:  # noqa: BLE001
                raise self._error(what, e) from None

    def _check_writable(self) -> None:
        if not self.writable:
            from ..errors import ReadOnlyError

            raise ReadOnlyError(f"{self.url} is open read-only")

    def _error(self, what: str, e: BaseException) -> StorageError:
        status = getattr(e, "ntstatus", None) or getattr(getattr(e, "status", None), "value", None)
        text = _safe(e, self.location.password)
        if isinstance(e, FileNotFoundError) or "STATUS_OBJECT_NAME_NOT_FOUND" in text or "No such file" in text:
            return ImageNotFoundError(f"no such file: {self.url}")
        if status == _STATUS_OBJECT_NAME_COLLISION or isinstance(e, FileExistsError):
            return ImageExistsError(f"{self.url} already exists")
        if status == _STATUS_SHARING_VIOLATION or "SHARING_VIOLATION" in text.upper():
            return ImageInUseError(f"{self.url} is open for writing elsewhere")
        if type(e).__name__ == "DiskFull" or status == _STATUS_DISK_FULL or "STATUS_DISK_FULL" in text:
            return StorageError(f"{what}: the share is full ({self.url})")
        return StorageError(f"{what}: {self.url}: {text}")


def _credentials_file() -> dict[str, str]:
    path = os.environ.get("VHDKIT_SMB_CREDENTIALS")
    return read_credentials_file(path) if path else {}


def read_credentials_file(path: str) -> dict[str, str]:
    """``key = value`` lines (``username``, ``password``, ``domain``), as smbclient's -A reads them."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.partition("=")
                if sep:
                    out[key.strip().lower()] = value.strip()
    except OSError as e:
        raise StorageError(f"cannot read the SMB credentials file {path}: {e.strerror}") from None
    return out


def _safe(error: BaseException, password: str | None) -> str:
    text = f"{type(error).__name__}: {error}"
    if password:
        text = text.replace(password, "***")
    return text
