"""Storage locations (local folders and SMB 3 share paths) and the hosts that must reach them.

A location's capacity is measured, never configured: ``os.statvfs`` for a folder, the server's
FileFsFullSizeInformation (``smbclient.stat_volume``) for a share. Whether a host reaches a share
is verified by logging in with that host's own credentials on a connection of its own (a pooled
session would hide a wrong password: specs/smb.md) and opening the share; write access by
creating and removing a probe file. Passwords never appear in a repr, a message or a report.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, ContextManager, NamedTuple

from ..errors import PlacementError, StorageError
from ..storage import is_url

_DIALECTS = {0x202: "2.0.2", 0x210: "2.1", 0x300: "3.0", 0x302: "3.0.2", 0x311: "3.1.1"}


class Identity(NamedTuple):
    """Who a host is to an SMB server."""

    username: str
    password: str = ""

    def __repr__(self) -> str:
        return f"Identity({self.username!r}, password=***)"


class Host(NamedTuple):
    name: str
    identity: Identity | None = None  # how it logs in to SMB servers
    local: bool = False  # it is this machine: it reaches local folders (no other host does)


class Capacity(NamedTuple):
    total: int
    free: int
    dialect: str | None = None  # SMB dialect negotiated, e.g. "3.1.1"; None for a folder
    encrypted: bool | None = None


class Reach(NamedTuple):
    host: str
    reachable: bool
    writable: bool
    why: str | None = None  # why not, in a sentence


class Location:
    """A folder (``/srv/vms``) or an SMB share path (``smb://server[:port]/share/dir``)."""

    def __init__(self, where: str, *, identity: Identity | None = None, encrypt: bool = False) -> None:
        self.where = where
        self.is_smb = is_url(where) and where.startswith("smb://")
        if is_url(where) and not self.is_smb:
            raise PlacementError(f"a location is a folder or an smb:// share path, not {where}")
        self.identity = identity
        self.encrypt = encrypt
        if self.is_smb and identity is not None:
            from ..storage.smb import SmbLocation, remember_password

            loc = SmbLocation(where, username=identity.username, password=identity.password)
            remember_password(loc.host, loc.port, identity.username, identity.password)

    def policy(self) -> ContextManager[None]:
        """While inside, files opened here by URL honour this location's encryption."""
        if not (self.is_smb and self.encrypt):
            return contextlib.nullcontext()
        from ..storage.smb import SmbLocation, encryption_required

        loc = SmbLocation(self.where)
        return encryption_required(loc.host, loc.port)

    def sealed(self) -> "Location":
        """This location, spoken to with SMB 3 encryption."""
        return self if self.encrypt or not self.is_smb else Location(self.where, identity=self.identity, encrypt=True)

    def __repr__(self) -> str:
        return f"Location({self.where!r})"

    # -- capacity ----------------------------------------------------------------------------
    def measure(self) -> Capacity:
        if not self.is_smb:
            try:
                st = os.statvfs(self.where)
            except OSError as e:
                raise StorageError(f"cannot measure {self.where}: {e.strerror}") from None
            return Capacity(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)
        import smbclient

        loc = self._smb(self.identity)
        cache: dict[str, Any] = {}  # a session of its own, so encrypt= is this location's, not a pooled one's
        try:
            session = smbclient.register_session(loc.host, username=loc.username, password=loc.password,
                                                 port=loc.port, encrypt=self.encrypt or None,
                                                 connection_cache=cache, connection_timeout=10)
            vol = smbclient.stat_volume(_share_root(loc), **loc.credentials, connection_cache=cache)
            # encrypted: the whole session, or this share's tree connect (a share the server seals)
            encrypted = bool(session.encrypt_data) or any(
                tree.encrypt_data for tree in session.tree_connect_table.values()
                if tree.share_name.lower() == rf"\\{loc.host}\{loc.share}".lower())
        except Exception as e:  # noqa: BLE001 - smbprotocol's errors are many; none may show a password
            if self.encrypt and "encrypt" in str(e).lower():
                raise StorageError(f"{loc.url} does not offer SMB 3 encryption") from None
            raise StorageError(f"cannot measure {loc.url}: {_without(e, loc.password)}") from None
        finally:
            _close(cache)
        dialect = _DIALECTS.get(getattr(session.connection, "dialect", None))
        return Capacity(vol.total_size, vol.caller_available_size, dialect, encrypted)

    # -- reach -------------------------------------------------------------------------------
    def reach(self, host: Host) -> Reach:
        """Can ``host``, with its own credentials, open (and write to) this location?"""
        if not self.is_smb:
            if not host.local:
                return Reach(host.name, False, False, f"{self.where} is a folder on this machine, not shared with "
                             f"{host.name}")
            ok = os.path.isdir(self.where)
            writable = ok and os.access(self.where, os.W_OK)
            return Reach(host.name, ok, writable, None if writable else f"{self.where} is not a writable folder here")
        if host.identity is None:
            return Reach(host.name, False, False, f"{host.name} has no SMB identity")
        import smbclient

        loc = self._smb(host.identity)
        cache: dict[str, Any] = {}  # a connection of its own: really log in with these credentials
        options = dict(loc.credentials, connection_cache=cache)
        try:
            smbclient.register_session(loc.host, username=loc.username, password=loc.password, port=loc.port,
                                       connection_cache=cache, connection_timeout=10,
                                       encrypt=self.encrypt or None)
            smbclient.listdir(_share_root(loc), **options)
        except Exception as e:  # noqa: BLE001
            _close(cache)
            return Reach(host.name, False, False,
                         f"{host.name} ({loc.username}) cannot open {loc.url}: {_reason(e, loc.password)}")
        probe = _share_root(loc) + rf"\.vhdkit-probe-{os.urandom(4).hex()}"
        try:
            with smbclient.open_file(probe, "xb", **options):
                pass
            smbclient.remove(probe, **options)
            writable, why = True, None
        except Exception as e:  # noqa: BLE001
            writable, why = False, f"{host.name} ({loc.username}) cannot write to {loc.url}: {_reason(e, loc.password)}"
        finally:
            _close(cache)
        return Reach(host.name, True, writable, why)

    def _smb(self, identity: Identity | None):  # noqa: ANN202
        from ..storage.smb import SmbLocation

        ident = identity or self.identity
        return SmbLocation(self.where, username=ident.username if ident else None,
                           password=ident.password if ident else None, encrypt=self.encrypt)


def _share_root(loc: Any) -> str:
    return rf"\\{loc.host}\{loc.share}" + (f"\\{loc.path}" if loc.path else "")


def _close(cache: dict[str, Any]) -> None:
    for connection in list(cache.values()):
        try:
            connection.disconnect(True)
        except Exception:  # noqa: BLE001 - closing a probe's connection: nothing to lose
            pass


def _reason(error: BaseException, password: str | None) -> str:
    text = _without(error, password)
    for status, words in (("STATUS_LOGON_FAILURE", "the server refused the credentials"),
                          ("STATUS_ACCESS_DENIED", "access denied"), ("STATUS_BAD_NETWORK_NAME", "no such share"),
                          ("LogonFailure", "the server refused the credentials"), ("BadNetworkName", "no such share"),
                          ("encryption is required but", "the server does not offer SMB 3 encryption")):
        if status in text:
            return words
    return text


def _without(error: BaseException, password: str | None) -> str:
    text = f"{type(error).__name__}: {error}"
    return text.replace(password, "***") if password else text
