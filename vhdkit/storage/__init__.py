"""Where an image's bytes live: the Store protocol and its backends.

``open_store(target)`` picks the backend: a plain path or ``file://`` URL is a LocalStore;
``smb://`` is an SmbStore (smbprotocol); any other URL goes to fsspec (``memory://``, ``http://`` ...).
"""

from __future__ import annotations

import os

from ..runtime_types import lazy_attributes
from .base import BaseStore, Borrowed, Store, read_fully, redact
from .local import LocalStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .fileobj import FileObjectStore
    from .fsspec_store import FsspecStore
    from .overlay import OverlayStore

# Loaded on first use: a local disk needs none of them, and every module costs start-up.
__getattr__ = lazy_attributes(globals(), {"FileObjectStore": f"{__name__}.fileobj",
                                          "FsspecStore": f"{__name__}.fsspec_store",
                                          "OverlayStore": f"{__name__}.overlay"})

__all__ = [
    "BaseStore",
    "FileObjectStore",
    "Borrowed",
    "FsspecStore",
    "LocalStore",
    "OverlayStore",
    "Store",
    "is_url",
    "open_store",
    "read_fully",
    "redact",
]


def is_url(target: str) -> bool:
    """``scheme://...`` with a scheme as RFC 3986 3.1 spells it; "C:\\..." is a drive letter.
    (Not urllib.parse: importing it costs every command ~2 ms, and plain paths need none of it.)"""
    scheme, sep, _ = target.partition("://")
    return (bool(sep) and len(scheme) > 1 and scheme[0].isascii() and scheme[0].isalpha()
            and all(c.isascii() and (c.isalnum() or c in "+-.") for c in scheme))


def open_store(target: str | os.PathLike[str], *, writable: bool = False, create: bool = False,
               regular_only: bool = False, force_share: bool | None = None) -> Store:
    """Open ``target`` (path or URL) as a Store; read-only unless ``writable``. ``regular_only``:
    a local path must be a regular file (not even a block device). ``force_share``: a local
    reader does not keep writers out (see LocalStore)."""
    if isinstance(target, os.PathLike):
        return LocalStore(target, writable=writable, create=create, regular_only=regular_only,
                          force_share=force_share)
    if not isinstance(target, str):
        raise TypeError(f"expected a path or URL, got {type(target).__name__}")
    if is_url(target):
        from urllib.parse import unquote, urlparse

        parsed = urlparse(target)
        if parsed.scheme == "file":
            return LocalStore(unquote(parsed.path), writable=writable, create=create, regular_only=regular_only,
                              force_share=force_share)
        if parsed.scheme == "smb":
            from .smb import SmbStore

            return SmbStore(target, writable=writable, create=create)
        from .fsspec_store import FsspecStore

        return FsspecStore(target, writable=writable, create=create)
    return LocalStore(target, writable=writable, create=create, regular_only=regular_only,
                          force_share=force_share)
