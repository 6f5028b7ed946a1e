"""[MS-VHDX] 2.2.2 header selection and 2.2.3 region tables, on a real Windows-made image."""

from __future__ import annotations

import struct
import uuid

import pytest

import vhdkit
from vhdkit.errors import CorruptImageError, UnsupportedFeatureError

from ..conftest import sha256_of_disk
from .patching import HEADER_OFFSETS, REGION_OFFSETS, Image, fix_crc
from .test_samples import PAULSHIR, PAULSHIR_CONTENT


@pytest.fixture
def image(sample):
    return Image(sample(PAULSHIR))  # headers seq 12 (slot 1) and 13 (slot 2)


def test_current_header_is_the_one_with_the_larger_sequence_number(image):
    with vhdkit.open(image.path) as disk:
        assert disk.header.slot == 2 and disk.header.sequence_number == 13


@pytest.mark.parametrize("slot", [0, 1])
def test_a_header_with_a_bad_checksum_is_skipped_for_the_other(image, slot):
    image.data[HEADER_OFFSETS[slot] + 100] ^= 0xFF  # a reserved byte: only the CRC notices
    image.save()
    with vhdkit.open(image.path) as disk:
        assert disk.header.slot == 2 - slot
        assert disk.header_selection.errors[slot] is not None
        assert "checksum" in str(disk.header_selection.errors[slot])
        assert sha256_of_disk(disk) == PAULSHIR_CONTENT


def test_both_headers_bad_is_a_corrupt_image_naming_structure_and_offset(image):
    image.data[HEADER_OFFSETS[0] + 100] ^= 0xFF
    image.data[HEADER_OFFSETS[1] : HEADER_OFFSETS[1] + 4] = b"xxxx"
    image.save()
    with pytest.raises(CorruptImageError) as err:
        vhdkit.open(image.path)
    assert err.value.structure == "VHDX headers"
    assert err.value.offset == HEADER_OFFSETS[0]
    assert "header 1" in str(err.value) and "checksum" in str(err.value)
    assert "header 2" in str(err.value) and "signature" in str(err.value)


def test_identical_headers_with_equal_sequence_numbers_are_accepted(image):
    """Disk2VHD writes two byte-identical headers with sequence 1."""
    h = bytes(image.data[HEADER_OFFSETS[1] : HEADER_OFFSETS[1] + 4096])
    image.data[HEADER_OFFSETS[0] : HEADER_OFFSETS[0] + 4096] = h
    image.save()
    with vhdkit.open(image.path) as disk:
        assert disk.header.sequence_number == 13
        assert sha256_of_disk(disk) == PAULSHIR_CONTENT


def test_differing_headers_with_equal_sequence_numbers_are_corrupt(image):
    at = HEADER_OFFSETS[0]
    image.u64(at + 8, 13)
    image.data[at + 16 : at + 32] = uuid.uuid4().bytes_le  # another FileWriteGuid
    fix_crc(image.data, at, 4096)
    image.save()
    with pytest.raises(CorruptImageError, match="same sequence number"):
        vhdkit.open(image.path)


def test_unknown_header_version_is_refused(image):
    for at in HEADER_OFFSETS:
        struct.pack_into("<H", image.data, at + 66, 2)  # Version
        fix_crc(image.data, at, 4096)
    image.save()
    with pytest.raises(UnsupportedFeatureError, match="version 2"):
        vhdkit.open(image.path)


@pytest.mark.parametrize("copy", [0, 1])
def test_a_region_table_with_a_bad_checksum_is_skipped_for_the_other(image, copy):
    image.data[REGION_OFFSETS[copy] + 1000] ^= 0x01
    image.save()
    with vhdkit.open(image.path) as disk:
        assert disk.regions.current.copy == 2 - copy
        assert sha256_of_disk(disk) == PAULSHIR_CONTENT


def test_both_region_tables_bad_is_a_corrupt_image(image):
    image.data[REGION_OFFSETS[0] + 1000] ^= 0x01
    image.data[REGION_OFFSETS[1] : REGION_OFFSETS[1] + 4] = b"\0\0\0\0"
    image.save()
    with pytest.raises(CorruptImageError) as err:
        vhdkit.open(image.path)
    assert err.value.structure == "region tables" and err.value.offset == REGION_OFFSETS[0]
    assert "table 1" in str(err.value) and "table 2" in str(err.value)


def _add_region(image: Image, required: int) -> None:
    for at in REGION_OFFSETS:
        count = struct.unpack_from("<I", image.data, at + 8)[0]
        entry = at + 16 + 32 * count
        image.data[entry : entry + 16] = uuid.uuid4().bytes_le
        struct.pack_into("<QII", image.data, entry + 16, 64 << 20, 1 << 20, required)
        struct.pack_into("<I", image.data, at + 8, count + 1)
        fix_crc(image.data, at, 65536)
    image.save()


def test_unknown_required_region_is_refused(image):
    _add_region(image, required=1)
    with pytest.raises(UnsupportedFeatureError, match="required region"):
        vhdkit.open(image.path)


def test_unknown_optional_region_is_ignored(image):
    _add_region(image, required=0)
    with vhdkit.open(image.path) as disk:
        assert len(disk.regions.current.regions) == 3
        assert sha256_of_disk(disk) == PAULSHIR_CONTENT


def test_overlapping_regions_are_corrupt(image):
    for at in REGION_OFFSETS:
        other = struct.unpack_from("<Q", image.data, at + 16 + 32 + 16)[0]
        struct.pack_into("<Q", image.data, at + 16 + 16, other)  # entry 0 onto entry 1
        fix_crc(image.data, at, 65536)
    image.save()
    with pytest.raises(CorruptImageError, match="overlap"):
        vhdkit.open(image.path)
