"""GUIDs, as uuid.UUID shows them, without importing uuid.

Every VHDX structure holds GUIDs, so every command that opens one needs them; but ``import
uuid`` loads platform (which compiles regular expressions at import), re and enum: about 9 ms of
each run on the machines vhdkit is measured on, more than a whole ``vhdkit check`` spends on its
disk. `Guid` is the part of uuid.UUID vhdkit uses: made from text, ``bytes`` (big-endian, as VHD
stores its unique id), ``bytes_le`` (Microsoft's mixed-endian order, as VHDX stores GUIDs) or an
``int``; shown as the same lower-case text; equal to, hashed like and ordered with a uuid.UUID of
the same value, so callers may pass and compare either. ``to_uuid()`` gives the real one.
"""

from __future__ import annotations

import os

_int = int  # the constructor's parameters shadow these names, as uuid.UUID's do
_bytes = bytes
_MAX = 1 << 128


def _swap_le(b: bytes) -> bytes:
    """bytes <-> bytes_le: the first three groups (4, 2, 2 bytes) change byte order."""
    return b[3::-1] + b[5:3:-1] + b[7:5:-1] + b[8:]


class Guid:
    """A 128-bit GUID; immutable."""

    __slots__ = ("int",)
    int: _int

    def __init__(self, hex: str | None = None, *, bytes: _bytes | None = None,  # noqa: A002 - uuid.UUID's names
                 bytes_le: _bytes | None = None, int: _int | None = None) -> None:  # noqa: A002
        if [hex, bytes, bytes_le, int].count(None) != 3:
            raise TypeError("one of hex, bytes, bytes_le or int is needed")
        if hex is not None:
            digits = hex.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "")
            if len(digits) != 32:
                raise ValueError("badly formed hexadecimal UUID string")
            value = _int(digits, 16)
        elif bytes is not None or bytes_le is not None:
            raw = _bytes(bytes if bytes is not None else bytes_le)  # type: ignore[arg-type]
            if len(raw) != 16:
                raise ValueError("bytes is not a 16-char string")
            value = _int.from_bytes(raw if bytes is not None else _swap_le(raw), "big")
        else:
            value = int  # type: ignore[assignment]
            if not 0 <= value < _MAX:  # type: ignore[operator]
                raise ValueError("int is out of range (need a 128-bit value)")
        object.__setattr__(self, "int", value)

    @classmethod
    def random(cls) -> Guid:
        """A random (version 4) GUID, as uuid.uuid4()."""
        value = _int.from_bytes(os.urandom(16), "big")
        value = (value & ~(0xC000 << 48) | 0x8000 << 48) & ~(0xF000 << 64) | 4 << 76  # RFC 4122 variant, v4
        return cls(int=value)

    def __setattr__(self, name: str, value: object) -> None:
        raise TypeError("Guid objects are immutable")

    @property
    def bytes(self) -> _bytes:
        return self.int.to_bytes(16, "big")

    @property
    def bytes_le(self) -> _bytes:
        return _swap_le(self.bytes)

    @property
    def hex(self) -> str:
        return "%032x" % self.int

    @property
    def version(self) -> _int | None:
        """As uuid.UUID: the version of an RFC 4122 GUID, else None."""
        return (self.int >> 76) & 0xF if (self.int >> 62) & 0x3 == 0x2 else None

    def to_uuid(self) -> object:
        import uuid

        return uuid.UUID(int=self.int)

    def __str__(self) -> str:
        h = self.hex
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def __repr__(self) -> str:
        return f"Guid('{self}')"

    def __hash__(self) -> _int:
        return hash(self.int)  # as uuid.UUID's: the two mix in sets and as dict keys

    def __int__(self) -> _int:
        return self.int

    def _other(self, other: object) -> _int | None:
        """The value of a Guid or a uuid.UUID (both have an int and bytes_le), else None."""
        value = getattr(other, "int", None)
        return value if isinstance(value, _int) and hasattr(other, "bytes_le") else None

    def __eq__(self, other: object) -> bool:
        value = self._other(other)
        return NotImplemented if value is None else self.int == value

    def __lt__(self, other: object) -> bool:
        value = self._other(other)
        return NotImplemented if value is None else self.int < value

    def __le__(self, other: object) -> bool:
        value = self._other(other)
        return NotImplemented if value is None else self.int <= value

    def __gt__(self, other: object) -> bool:
        value = self._other(other)
        return NotImplemented if value is None else self.int > value

    def __ge__(self, other: object) -> bool:
        value = self._other(other)
        return NotImplemented if value is None else self.int >= value

    def __reduce__(self) -> tuple[object, ...]:
        return (_from_int, (self.int,))


def _from_int(value: _int) -> Guid:
    """Unpickling: __slots__ with an immutable __setattr__ needs a constructor call."""
    return Guid(int=value)
