"""Sizes and alignment.

Sizes are binary, as in qemu-img and Hyper-V's cmdlets: ``60G``, ``60GB`` and ``60GiB`` all mean
60 × 2**30 bytes (PowerShell's ``60GB`` literal is binary too). A bare number is bytes.
"""

from __future__ import annotations

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
PiB = 1 << 50

_PREFIXES = {"k": KiB, "m": MiB, "g": GiB, "t": TiB, "p": PiB}


def parse_size(text: str | int) -> int:
    """Parse ``"60G"``, ``"16GiB"``, ``"512"`` or ``"1.5M"`` into bytes (binary units).

    Raises ValueError for anything else, and for fractions that are not a whole number of bytes.
    """
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size must not be negative: {text}")
        return text
    # NUMBER [spaces] [k|m|g|t|p] [b|ib], any case, spaces around (read by hand: re costs start-up)
    rest = text.strip().lower()
    rest = rest[:-2] if rest.endswith("ib") else rest[:-1] if rest.endswith("b") else rest
    multiplier = 1
    if rest[-1:] in _PREFIXES:
        multiplier, rest = _PREFIXES[rest[-1]], rest[:-1]
    number = rest.rstrip()
    whole, dot, fraction = number.partition(".")
    if not whole.isdecimal() or (dot and not fraction.isdecimal()):
        raise ValueError(
            f"not a size: {text!r} (use bytes or a binary unit: 512, 64K, 60G, 16GiB)"
        )
    if dot:
        numerator = int(whole + fraction) * multiplier
        denominator = 10 ** len(fraction)
        if numerator % denominator:
            raise ValueError(f"{text!r} is not a whole number of bytes")
        return numerator // denominator
    return int(number) * multiplier


def format_size(n: int) -> str:
    """Human form with the unit spelled out: ``60 GiB``, ``1.5 MiB``, ``512 bytes``."""
    if n < KiB:
        return f"{n} bytes"
    for unit, scale in (("PiB", PiB), ("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= scale:
            value = n / scale
            text = f"{value:.2f}".rstrip("0").rstrip(".")
            return f"{text} {unit}"
    raise AssertionError("unreachable")


def align_up(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def align_down(n: int, alignment: int) -> int:
    return n // alignment * alignment


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)
