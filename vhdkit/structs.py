"""Fixed-size on-disk records, declared once as classes and packed with the stdlib ``struct``.

The VHD and VHDX structures are flat records of fixed size: integers of one byte order, byte
strings, GUIDs, and (VHD) one array of sub-records. A declaration reads like the spec's table,
in its field order, and gives typed attribute access::

    class Header(Record, byte_order=LITTLE):     # [MS-VHDX] 2.2.2
        signature: bytes = Bytes(4)
        checksum: int = U32
        log_guid: Guid = GUID_LE
        ...

    h = Header.parse(raw)                         # h.checksum is an int
    raw = h.to_bytes()                            # or Header(**fields).to_bytes()
    newer = h.replace(sequence_number=h.sequence_number + 1)

Records are immutable; ``replace`` makes a changed copy. A subclass that declares no fields of
its own adds behaviour to a declared record (a region table entry with its name, a header with the
slot it was read from) without declaring it again.

Integers made of bit ranges (the VHDX BAT entry) are declared the same way with ``BitField``::

    class BatEntry(BitField):                     # [MS-VHDX] 2.5.1, low bits first
        state = Bits(3)
        reserved = Bits(17)
        file_offset_mb = Bits(44)

    BatEntry.state.of(value); BatEntry.pack(state=6, file_offset_mb=4)

Why not ``construct``: importing it costs 55-85 ms in every process (it loads pdb, inspect, pickle
and hashlib), more than a whole ``vhdkit check``, and its parsers are pure Python per field where
one ``struct.unpack`` does a whole record. construct serves the tests instead: specs/ holds an
independent declaration of every structure in it, and the tests parse what vhdkit writes with it.

Parsing never trusts the input beyond its length: ``parse`` needs at least ``size`` bytes and
raises ValueError otherwise; every field value is the bytes' plain meaning. Checks of meaning
(signatures, ranges) belong to the callers, which name the structure in their errors.
"""

from __future__ import annotations

import struct

from .guid import Guid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence, TypeVar

    R = TypeVar("R", bound="Record")
    B = TypeVar("B", bound="BitField")

LITTLE = "<"
BIG = ">"


class FieldType:
    """How one field is stored: a ``struct`` code, and the conversions to and from its value."""

    def __init__(self, code: str, size: int, decode: Callable[[Any], Any] | None = None,
                 encode: Callable[[Any], Any] | None = None) -> None:
        self.code, self.size, self.decode, self.encode = code, size, decode, encode


# Typed as Any so that a declaration ``checksum: int = U32`` type-checks: the class attribute is
# the field's description, the instance attribute its value.
U8: Any = FieldType("B", 1)
U16: Any = FieldType("H", 2)
U32: Any = FieldType("I", 4)
U64: Any = FieldType("Q", 8)


def Bytes(n: int) -> Any:  # noqa: N802 - reads like a type in declarations
    """``n`` raw bytes; building refuses any other length (struct would pad or cut silently)."""

    def exact(value: bytes) -> bytes:
        value = bytes(value)
        if len(value) != n:
            raise ValueError(f"needs exactly {n} bytes, got {len(value)}")
        return value

    return FieldType(f"{n}s", n, None, exact)


def _guid_le_encode(value: Guid) -> bytes:
    return value.bytes_le


#: A GUID as Microsoft stores it: the first three groups little-endian ("mixed-endian").
GUID_LE: Any = FieldType("16s", 16, lambda raw: Guid(bytes_le=raw), _guid_le_encode)


def Array(count: int, item: type[Record]) -> Any:  # noqa: N802
    """``count`` consecutive records of ``item``; the value is a list of them."""

    def decode(raw: bytes) -> list[Record]:
        return [item.parse(raw[i * item.size : (i + 1) * item.size]) for i in range(count)]

    def encode(values: Sequence[Record | Mapping[str, Any]]) -> bytes:
        if len(values) != count:
            raise ValueError(f"needs exactly {count} items, got {len(values)}")
        return b"".join(item.build(v) for v in values)

    return FieldType(f"{count * item.size}s", count * item.size, decode, encode)


class Record:
    """A fixed-size record: subclass it with ``byte_order=`` and one ``name: type = FIELD`` line
    per field, in the spec's order (no padding is ever inserted)."""

    _names: ClassVar[tuple[str, ...]] = ()
    _struct: ClassVar[struct.Struct]
    _decoders: ClassVar[tuple[tuple[int, Callable[[Any], Any]], ...]] = ()
    _encoders: ClassVar[tuple[tuple[int, Callable[[Any], Any]], ...]] = ()
    _offsets: ClassVar[dict[str, int]] = {}
    _extras: ClassVar[tuple[str, ...]] = ()  # a subclass's own attributes (not fields), set by replace()
    size: ClassVar[int] = 0

    def __init_subclass__(cls, byte_order: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields = [(name, value) for name, value in vars(cls).items() if isinstance(value, FieldType)]
        if byte_order is None:
            if fields:
                raise TypeError(f"{cls.__name__} declares fields: say its byte_order (LITTLE or BIG)")
            return  # behaviour added to a record declared above
        if byte_order not in (LITTLE, BIG):
            raise ValueError("byte order must be LITTLE or BIG")
        if cls._names:
            raise TypeError(f"{cls.__name__}: a record's fields are declared once")
        for name, _ in fields:
            delattr(cls, name)  # the instance's value takes its place
        types = [t for _, t in fields]
        cls._names = tuple(name for name, _ in fields)
        cls._struct = struct.Struct(byte_order + "".join(t.code for t in types))
        cls.size = cls._struct.size
        assert cls.size == sum(t.size for t in types)  # no implicit padding with < and >
        cls._decoders = tuple((i, t.decode) for i, t in enumerate(types) if t.decode is not None)
        cls._encoders = tuple((i, t.encode) for i, t in enumerate(types) if t.encode is not None)
        offsets, at = {}, 0
        for name, t in fields:
            offsets[name] = at
            at += t.size
        cls._offsets = offsets

    def __init__(self, **values: Any) -> None:
        missing = [n for n in self._names if n not in values]
        extra = [k for k in values if k not in self._names]
        if missing or extra:
            raise TypeError(f"{type(self).__name__}: fields missing: {missing}, unknown: {extra}")
        self.__dict__.update(values)

    # -- the declaration -----------------------------------------------------------------------
    @classmethod
    def sizeof(cls) -> int:
        return cls.size

    @classmethod
    def offset_of(cls, name: str) -> int:
        """Byte offset of a field inside the record."""
        return cls._offsets[name]

    # -- bytes ---------------------------------------------------------------------------------
    @classmethod
    def parse(cls: type[R], data: bytes | bytearray | memoryview) -> R:
        """The record at the start of ``data`` (ValueError if ``data`` is shorter than it)."""
        if len(data) < cls.size:
            raise ValueError(f"needs {cls.size} bytes, got {len(data)}")
        values = list(cls._struct.unpack_from(data))
        for i, decode in cls._decoders:
            values[i] = decode(values[i])
        record = cls.__new__(cls)
        record.__dict__.update(zip(cls._names, values))
        return record

    @classmethod
    def build(cls, values: Record | Mapping[str, Any]) -> bytes:
        """The bytes of a record given as one, or as a mapping of every field (no others)."""
        if isinstance(values, Record):
            values = values.asdict()
        missing = [n for n in cls._names if n not in values]
        extra = [k for k in values if k not in cls._names]
        if missing or extra:
            raise ValueError(f"fields missing: {missing}, unknown: {extra}")
        items = [values[n] for n in cls._names]
        try:
            for i, encode in cls._encoders:
                items[i] = encode(items[i])
            return cls._struct.pack(*items)
        except (struct.error, ValueError, AttributeError, TypeError) as e:
            raise ValueError(f"cannot build the record: {e}") from e

    def to_bytes(self) -> bytes:
        return type(self).build(self)

    # -- values --------------------------------------------------------------------------------
    def asdict(self) -> dict[str, Any]:
        return {name: self.__dict__[name] for name in self._names}

    def replace(self: R, **changes: Any) -> R:
        """A copy with some fields (or a subclass's own attributes) changed."""
        unknown = [k for k in changes if k not in self._names and k not in self._extras]
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {unknown[0]!r}")
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: use replace({name}=...)")

    def __iter__(self) -> Iterator[Any]:
        return (self.__dict__[name] for name in self._names)

    def __eq__(self, other: object) -> bool:
        """Same declaration and the same field values (a subclass's own attributes aside)."""
        if not isinstance(other, Record) or other._names != self._names or other._struct.format != self._struct.format:
            return NotImplemented
        return self.asdict() == other.asdict()

    # Equal by value, and an Array field is a list: not hashable.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        def show(value: Any) -> str:
            text = repr(value)
            return text if len(text) <= 40 else text[:37] + "..."

        return f"{type(self).__name__}({', '.join(f'{n}={show(v)}' for n, v in self.asdict().items())})"


class Scalar:
    """One value on its own (a metadata item that is a single integer or GUID)."""

    def __init__(self, byte_order: str, field: FieldType) -> None:
        if byte_order not in (LITTLE, BIG):
            raise ValueError("byte order must be LITTLE or BIG")
        self._struct = struct.Struct(byte_order + field.code)
        self._field = field
        self.size = self._struct.size

    def sizeof(self) -> int:
        return self.size

    def parse(self, data: bytes | bytearray | memoryview) -> Any:
        if len(data) < self.size:
            raise ValueError(f"needs {self.size} bytes, got {len(data)}")
        value = self._struct.unpack_from(data)[0]
        return self._field.decode(value) if self._field.decode else value

    def build(self, value: Any) -> bytes:
        try:
            return self._struct.pack(self._field.encode(value) if self._field.encode else value)
        except (struct.error, ValueError, AttributeError, TypeError) as e:
            raise ValueError(f"cannot build the value: {e}") from e


class Bits:
    """One range of bits inside a BitField (its place is set by the declaration's order)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.mask = (1 << width) - 1
        self.shift = 0
        self.name = "?"

    def of(self, value: int) -> int:
        """This range's value inside ``value``."""
        return value >> self.shift & self.mask

    def __repr__(self) -> str:
        return f"Bits({self.name}: {self.width} at {self.shift})"


class BitField:
    """An integer made of named bit ranges, declared low bits first (see the module note)."""

    width: ClassVar[int] = 0
    parts: ClassVar[tuple[Bits, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        parts = [(name, bits) for name, bits in vars(cls).items() if isinstance(bits, Bits)]
        shift = 0
        for name, bits in parts:
            bits.name, bits.shift = name, shift
            shift += bits.width
        cls.parts = tuple(bits for _, bits in parts)
        cls.width = shift

    @classmethod
    def unpack(cls, value: int) -> dict[str, int]:
        return {bits.name: bits.of(value) for bits in cls.parts}

    @classmethod
    def pack(cls, **values: int) -> int:
        """The integer of the named ranges (every one not named is 0); ValueError if one does
        not fit its width."""
        out = 0
        known = {bits.name: bits for bits in cls.parts}
        for name, value in values.items():
            bits = known.get(name)
            if bits is None:
                raise ValueError(f"{cls.__name__} has no range {name!r}")
            if not 0 <= value <= bits.mask:
                raise ValueError(f"{cls.__name__}.{name} is {bits.width} bits wide: {value} does not fit")
            out |= value << bits.shift
        return out
