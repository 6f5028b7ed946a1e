"""Fixed-size on-disk records, declared as field lists and packed with the stdlib ``struct``.

The VHD and VHDX structures are flat records of fixed size: integers of one byte order, byte
strings, GUIDs, and (VHD) one array of sub-records. A declaration here reads like the spec's
table::

    Header = Struct(LITTLE, ("signature", Bytes(4)), ("checksum", U32), ("log_guid", GUID_LE), ...)
    h = Header.parse(raw)          # a Record: h.checksum, h["checksum"]
    raw = Header.build(h)          # or build(dict(...)): every field must be given

Why not ``construct`` (the first choice for these declarations): importing it costs about 25 ms in every
process (it loads pdb, inspect, pickle and hashlib), more than all of vhdkit's own modules and
most of what a small command like ``vhdkit create`` spends; its parsers are also pure Python per
field, where one ``struct.unpack`` does a whole record.

Parsing never trusts the input beyond its length: ``parse`` needs at least ``size`` bytes and
raises ValueError otherwise; every field value is the bytes' plain meaning. Checks of meaning
(signatures, ranges) belong to the callers, which name the structure in their errors.
"""

from __future__ import annotations

import struct
import uuid
from typing import Any, Callable, Mapping, Sequence

LITTLE = "<"
BIG = ">"


class Record(dict):  # type: ignore[type-arg]
    """A parsed record: a dict of its fields, also readable as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


class FieldType:
    """How one field is stored: a ``struct`` code, and the conversions to and from its value."""

    def __init__(self, code: str, size: int, decode: Callable[[Any], Any] | None = None,
                 encode: Callable[[Any], Any] | None = None) -> None:
        self.code, self.size, self.decode, self.encode = code, size, decode, encode


U8 = FieldType("B", 1)
U16 = FieldType("H", 2)
U32 = FieldType("I", 4)
U64 = FieldType("Q", 8)


def Bytes(n: int) -> FieldType:  # noqa: N802 - reads like a type in declarations
    """``n`` raw bytes; building refuses any other length (struct would pad or cut silently)."""

    def exact(value: bytes) -> bytes:
        value = bytes(value)
        if len(value) != n:
            raise ValueError(f"needs exactly {n} bytes, got {len(value)}")
        return value

    return FieldType(f"{n}s", n, None, exact)


def _guid_le_encode(value: uuid.UUID) -> bytes:
    return value.bytes_le


#: A GUID as Microsoft stores it: the first three groups little-endian ("mixed-endian").
GUID_LE = FieldType("16s", 16, lambda raw: uuid.UUID(bytes_le=raw), _guid_le_encode)


def Array(count: int, item: Struct) -> FieldType:  # noqa: N802
    """``count`` consecutive records of ``item``; the value is a list of Records."""

    def decode(raw: bytes) -> list[Record]:
        return [item.parse(raw[i * item.size : (i + 1) * item.size]) for i in range(count)]

    def encode(values: Sequence[Mapping[str, Any]]) -> bytes:
        if len(values) != count:
            raise ValueError(f"needs exactly {count} items, got {len(values)}")
        return b"".join(item.build(v) for v in values)

    return FieldType(f"{count * item.size}s", count * item.size, decode, encode)


class Struct:
    """A record of named fields in one byte order, with no padding between them."""

    def __init__(self, byte_order: str, *fields: tuple[str, FieldType]) -> None:
        if byte_order not in (LITTLE, BIG):
            raise ValueError("byte order must be LITTLE or BIG")
        self.names = tuple(name for name, _ in fields)
        if len(set(self.names)) != len(self.names):
            raise ValueError("field names must be unique")
        self.types = tuple(t for _, t in fields)
        self._struct = struct.Struct(byte_order + "".join(t.code for t in self.types))
        self.size = self._struct.size
        assert self.size == sum(t.size for t in self.types)  # no implicit padding with < and >
        self._decoders = tuple((i, t.decode) for i, t in enumerate(self.types) if t.decode is not None)
        self._encoders = tuple((i, t.encode) for i, t in enumerate(self.types) if t.encode is not None)

    def sizeof(self) -> int:
        return self.size

    def offset_of(self, name: str) -> int:
        """Byte offset of a field inside the record."""
        i = self.names.index(name)
        return sum(t.size for t in self.types[:i])

    def parse(self, data: bytes | bytearray | memoryview) -> Record:
        """The record at the start of ``data`` (ValueError if ``data`` is shorter than it)."""
        if len(data) < self.size:
            raise ValueError(f"needs {self.size} bytes, got {len(data)}")
        values = list(self._struct.unpack_from(data))
        for i, decode in self._decoders:
            values[i] = decode(values[i])
        return Record(zip(self.names, values))

    def build(self, values: Mapping[str, Any]) -> bytes:
        """The record's bytes; every field must be given (extra keys are refused too)."""
        missing = [n for n in self.names if n not in values]
        extra = [k for k in values if k not in self.names]
        if missing or extra:
            raise ValueError(f"fields missing: {missing}, unknown: {extra}")
        items = [values[n] for n in self.names]
        try:
            for i, encode in self._encoders:
                items[i] = encode(items[i])
            return self._struct.pack(*items)
        except (struct.error, ValueError, AttributeError, TypeError) as e:
            raise ValueError(f"cannot build the record: {e}") from e


class Scalar:
    """One value on its own (a metadata item that is a single integer or GUID)."""

    def __init__(self, byte_order: str, field: FieldType) -> None:
        self._record = Struct(byte_order, ("value", field))
        self.size = self._record.size

    def sizeof(self) -> int:
        return self.size

    def parse(self, data: bytes | bytearray | memoryview) -> Any:
        return self._record.parse(data)["value"]

    def build(self, value: Any) -> bytes:
        return self._record.build({"value": value})
