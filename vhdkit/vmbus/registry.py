"""The netvsc buffer change as a Windows .reg file, and back.

The guest's Hyper-V network adapter keeps ReceiveBufferSize and SendBufferSize (DWORDs, in KB;
0x400 = 1,024 KB = the 1 MB default) under its driver key,
HKLM\\SYSTEM\\CurrentControlSet\\Control\\Class\\{4d36e972-e325-11ce-bfc1-08002be10318}\\NNNN, where
NNNN is the adapter's instance (it differs per VM: it must be given). regedit's export format:
UTF-16LE with a byte-order mark, CRLF line ends, "Windows Registry Editor Version 5.00".
"""

from __future__ import annotations

import re

from ..errors import RegistryError

NET_CLASS = "{4d36e972-e325-11ce-bfc1-08002be10318}"  # the Network adapters device class
HEADER = "Windows Registry Editor Version 5.00"
VALUES = ("ReceiveBufferSize", "SendBufferSize")
MAX_KB = 0xFFFFFFFF


def adapter_key(instance: str) -> str:
    if not re.fullmatch(r"\d{4}", instance):
        raise RegistryError(f"adapter instance {instance!r} must be four digits, as 0007")
    return f"HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Class\\{NET_CLASS}\\{instance}"


def to_kb(size_bytes: int, what: str) -> int:
    if size_bytes <= 0 or size_bytes % 1024:
        raise RegistryError(f"{what} of {size_bytes} bytes is not a positive whole number of KB")
    if size_bytes // 1024 > MAX_KB:
        raise RegistryError(f"{what} of {size_bytes} bytes does not fit a DWORD of KB")
    return size_bytes // 1024


def reg_text(instance: str, receive_bytes: int | None, send_bytes: int | None = None) -> str:
    """The .reg file's text (before encoding)."""
    lines = [HEADER, "", f"[{adapter_key(instance)}]"]
    for name, size in zip(VALUES, (receive_bytes, send_bytes)):
        if size is not None:
            lines.append(f'"{name}"=dword:{to_kb(size, name):08x}')
    if len(lines) == 3:
        raise RegistryError("nothing to set: give a receive or a send buffer size")
    return "\r\n".join(lines) + "\r\n"


def reg_file(instance: str, receive_bytes: int | None, send_bytes: int | None = None) -> bytes:
    """The .reg file as regedit writes it: UTF-16LE with a BOM, CRLF."""
    return b"\xff\xfe" + reg_text(instance, receive_bytes, send_bytes).encode("utf-16-le")


def read_reg(data: bytes) -> dict[str, dict[str, int]]:
    """Keys and their dword values (sizes in bytes for the buffer values) from a .reg file in
    UTF-16 (with BOM) or UTF-8; other value types are refused with their line."""
    if data.startswith(b"\xff\xfe"):
        text = data[2:].decode("utf-16-le")
    elif data.startswith(b"\xfe\xff"):
        text = data[2:].decode("utf-16-be")
    else:
        text = data.decode("utf-8-sig")
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if not lines or lines[0].strip() != HEADER:
        raise RegistryError(f"not a .reg file: the first line is not {HEADER!r}")
    keys: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for number, line in enumerate(lines[1:], start=2):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = keys.setdefault(line[1:-1], {})
            continue
        match = re.fullmatch(r'"([^"]+)"=dword:([0-9a-fA-F]{8})', line)
        if match is None or current is None:
            raise RegistryError(f"line {number} is not a dword value under a key: {line!r}")
        name, value = match.group(1), int(match.group(2), 16)
        current[name] = value * 1024 if name in VALUES else value
    return keys
