"""Hyper-V 2016+ binary configurations (.vmcx), read into the same tree as the XML ones.

No public specification exists; the layout below was worked out from a real file (the shared
sample) and checked against an independent reader, entry for entry (specs/vm.md, "VMCX"):

- two 4 KiB file headers at 0 and 4 KiB (signature 0x01282014; the higher sequence is current);
- an object table at 8 KiB: a 8-byte header (type 1), then 18-byte entries: type u8 (2: key table),
  checksum u32, file offset u64, length u32, flag u8; a type 0 entry ends the list;
- key tables, one 4 KiB page each: a 10-byte header (type u16 = 2, table number u16, sequence u16,
  checksum u32), then entries back to back to the end of the page. An entry: type u8 (1 free,
  3 integer, 6 string, 7 bytes, 8 bool, 9 node), flags u8, size u32 (the whole entry), the parent's
  table number u16 and offset in that table u32 (0/0: the root), hash u32, order u32, name length
  u8 (with its NUL), the ASCII name and NUL, then the value: i64; u32 byte count + UTF-16LE; u32
  byte count + bytes; u8; or nothing for a node.

Every count, offset and size is bounded by what holds it before it is used. The file's own log
(a replay region) is not replayed: a configuration Hyper-V closed cleanly does not need it.
"""

from __future__ import annotations

import struct
from typing import Any

from ..errors import VmConfigError
from .model import VmConfig
from .tree import config_from_tree

SIGNATURE = 0x01282014
PAGE = 4096
OBJECT_TABLE = 2 * PAGE
MAX_FILE = 64 * 1024 * 1024
MAX_TABLES = 4096
MAX_DEPTH = 64
FREE, INTEGER, STRING, BYTES, BOOL, NODE = 1, 3, 6, 7, 8, 9
_ENTRY = struct.Struct("<BBIHIII")  # type, flags, size, parent table, parent offset, hash, order
_OBJECT = struct.Struct("<BIQIB")  # type, checksum, offset, length, flag


def read(data: bytes, name: str) -> VmConfig:
    tree = read_tree(data, name)
    return config_from_tree(tree.get("configuration"), name, "vmcx")


def read_tree(data: bytes, name: str) -> dict[str, Any]:
    """The file's key-value tree as nested dicts (names to values or sub-dicts)."""
    if len(data) > MAX_FILE:
        raise VmConfigError(f"{name}: larger than {MAX_FILE // 2**20} MiB: not a VM configuration")
    if len(data) < OBJECT_TABLE + PAGE:
        raise VmConfigError(f"{name}: {len(data)} bytes: too short for a .vmcx (headers and object table)")
    signatures = [struct.unpack_from("<I", data, at)[0] for at in (0, PAGE)]
    if SIGNATURE not in signatures:
        raise VmConfigError(f"{name}: no .vmcx header (signature {SIGNATURE:#010x}) at 0 or 4 KiB")
    if struct.unpack_from("<H", data, OBJECT_TABLE)[0] != 1:
        raise VmConfigError(f"{name}: no object table at 8 KiB")
    entries: dict[tuple[int, int], tuple[int, int, int, str, bytes]] = {}
    at = OBJECT_TABLE + 8
    for _ in range(MAX_TABLES):
        if at + _OBJECT.size > OBJECT_TABLE + PAGE:
            break
        kind, _checksum, offset, length, _flag = _OBJECT.unpack_from(data, at)
        at += _OBJECT.size
        if kind == 0:
            break
        if kind != 2:
            continue
        if length != PAGE or offset % PAGE or offset + length > len(data):
            raise VmConfigError(f"{name}: object table entry at {at - _OBJECT.size:#x} names {length} bytes at "
                                f"{offset:#x}, outside the file or not one page")
        _read_key_table(data, offset, name, entries)
    return _build(entries, name)


def _read_key_table(data: bytes, offset: int, name: str,
                    entries: dict[tuple[int, int], tuple[int, int, int, str, bytes]]) -> None:
    kind, table, _sequence, _checksum = struct.unpack_from("<HHHI", data, offset)
    if kind != 2:
        raise VmConfigError(f"{name}: the key table at {offset:#x} has type {kind}, not 2")
    pos = 10
    while pos + _ENTRY.size + 1 <= PAGE:
        etype, _flags, size, parent_table, parent_offset, _hash, _order = _ENTRY.unpack_from(data, offset + pos)
        if etype == 0 or size == 0:
            break
        if size < _ENTRY.size + 1 or pos + size > PAGE:
            raise VmConfigError(f"{name}: key table {table} entry at {offset + pos:#x}: size {size} runs past its page")
        if etype != FREE:
            length = data[offset + pos + _ENTRY.size]
            start = offset + pos + _ENTRY.size + 1
            if length < 1 or _ENTRY.size + 1 + length > size:
                raise VmConfigError(f"{name}: key table {table} entry at {offset + pos:#x}: a name of {length} bytes "
                                    "does not fit")
            key = data[start : start + length - 1].decode("ascii", "replace")
            value = data[start + length : offset + pos + size]
            entries[(table, pos)] = (etype, parent_table, parent_offset, key, value)
        pos += size


def _build(entries: dict[tuple[int, int], tuple[int, int, int, str, bytes]], name: str) -> dict[str, Any]:
    children: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for where, (_, parent_table, parent_offset, _, _) in entries.items():
        children.setdefault((parent_table, parent_offset), []).append(where)

    def node(where: tuple[int, int], depth: int) -> Any:
        etype, _, _, key, value = entries[where]
        if depth > MAX_DEPTH:
            raise VmConfigError(f"{name}: nested more than {MAX_DEPTH} levels deep")
        if etype == NODE:
            return {entries[c][3]: node(c, depth + 1) for c in children.get(where, [])}
        return _value(etype, value, key, name)

    return {entries[r][3]: node(r, 1) for r in children.get((0, 0), [])}


def _value(etype: int, value: bytes, key: str, name: str) -> Any:
    try:
        if etype == INTEGER:
            return struct.unpack_from("<q", value)[0]
        if etype == BOOL:
            return bool(value[0])
        if etype in (STRING, BYTES):
            (length,) = struct.unpack_from("<I", value)
            if 4 + length > len(value):
                raise VmConfigError(f"{name}: {key}: {length} bytes of value do not fit its entry")
            raw = value[4 : 4 + length]
            return raw.decode("utf-16-le") if etype == STRING else raw
    except (struct.error, IndexError):
        raise VmConfigError(f"{name}: {key}: its value is cut short") from None
    except UnicodeDecodeError:
        raise VmConfigError(f"{name}: {key}: not valid UTF-16") from None
    raise VmConfigError(f"{name}: {key}: unknown value type {etype}")
