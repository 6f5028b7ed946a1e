from __future__ import annotations

import sys

import pytest

from vhdkit.errors import CorruptImageError, ParentNotFoundError, VhdkitError
from vhdkit.units import GiB, MiB, format_size, parse_size


@pytest.mark.parametrize("text,expected", [
    ("60G", 60 * GiB), ("60GiB", 60 * GiB), ("60GB", 60 * GiB), ("16g", 16 * GiB), ("512", 512),
    ("1.5M", 3 * MiB // 2), ("64K", 65536), ("2T", 2 << 40), (" 8 MiB ", 8 * MiB), (4096, 4096),
])
def test_parse_size_is_binary(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "-5", "60X", "1.0000001K", "sixty"])
def test_parse_size_rejects_nonsense(text):
    with pytest.raises(ValueError):
        parse_size(text)


def _size_by_pattern(text: str) -> int | None:
    """The grammar parse_size reads by hand, as a regular expression: the oracle below."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*", text, re.IGNORECASE)
    if match is None:
        return None
    number, prefix, _ = match.groups()
    whole, _, fraction = number.partition(".")
    scaled = int(whole + fraction) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
                                      "p": 1 << 50}[prefix.lower()]
    return scaled // 10 ** len(fraction) if scaled % 10 ** len(fraction) == 0 else None


def test_parse_size_reads_exactly_the_documented_grammar():
    import itertools

    parts = ["", " ", "1", "60", "1.5", ".5", "5.", "0.25", "k", "M", "g", "T", "p", "x", "b", "iB", "IB", "i", "-",
             "\t", "٣"]
    tried = 0
    for pieces in itertools.product(parts, repeat=3):
        text = "".join(pieces)
        expected = _size_by_pattern(text)
        try:
            got: int | None = parse_size(text)
        except ValueError:
            got = None
        assert got == expected, repr(text)
        tried += 1
    assert tried == len(parts) ** 3


def test_format_size_names_the_unit():
    assert format_size(60 * GiB) == "60 GiB"
    assert format_size(3 * MiB // 2) == "1.5 MiB"
    assert format_size(100) == "100 bytes"


def test_corrupt_image_error_says_what_where_and_why():
    e = CorruptImageError("checksum mismatch", structure="region table 1", offset=0x30000,
                          field="Checksum", expected=0x1234, found=0x4321)
    assert isinstance(e, VhdkitError)
    assert str(e) == "checksum mismatch (region table 1, at offset 0x30000, field Checksum) expected 0x1234, found 0x4321"


def test_parent_not_found_is_a_file_not_found_error_listing_paths():
    e = ParentNotFoundError("parent of c.vhdx not found", ["/a/p.vhdx", "/b/p.vhdx"])
    assert isinstance(e, FileNotFoundError) and isinstance(e, VhdkitError)
    assert str(e) == "parent of c.vhdx not found; tried: /a/p.vhdx, /b/p.vhdx"


def test_crcmod_c_extension_is_active():
    """The pure-Python CRC-32C is ~50x slower; the C extension must be the one in use."""
    import crcmod.crcmod  # noqa: F401

    assert sys.modules["crcmod.crcmod"]._usingExtension is True


def test_crc32c_known_answer():
    from vhdkit.vhdx.checksum import crc32c

    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720 B.4)
