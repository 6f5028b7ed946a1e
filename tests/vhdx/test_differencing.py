"""Differencing VHDX: block states, sector bitmaps and parent resolution (2.5.1, 2.6.2.6)."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

import vhdkit
from vhdkit import ExtentState
from vhdkit.errors import ParentMismatchError, ParentNotFoundError, VhdkitError

from ..conftest import pyvhdi_read, require_tool, vhdiinfo
from .differencing import BLOCK, make_chain
from .patching import HEADER_OFFSETS, Image, current_header, fix_crc


@pytest.fixture(autouse=True)
def _tools():
    require_tool("qemu-img")
    require_tool("qemu-io")


def test_child_reads_through_its_parent_block_by_block_and_sector_by_sector(tmp_path):
    chain = make_chain(tmp_path)
    expected = chain.expected_content()
    with vhdkit.open(chain.child) as disk:
        assert disk.disk_type == "differencing"
        assert disk.parent is not None and disk.parent.name == str(chain.parent)
        assert disk.pread(0, chain.size) == expected
        # unaligned reads across present/absent sector runs
        for off, n in [(2 * BLOCK + 100, 2000), (3 * BLOCK + 99 * 512 - 7, 1030), (5 * BLOCK - 1, 3)]:
            assert disk.pread(off, n) == expected[off : off + n]


def test_pyvhdi_and_dissect_read_the_same_chain(tmp_path):
    chain = make_chain(tmp_path)
    with vhdkit.open(chain.child) as disk:
        ours = disk.pread(0, chain.size)
    theirs = pyvhdi_read(chain.child, chain.parent, chain.size)
    # Block 4 is PayloadBlockState.ZERO, which "MUST return zeros" (2.5.1.1); libvhdi reads the
    # parent there instead (the libvhdi#17 family of block-state bugs). Everywhere else: equal.
    zero_block = slice(4 * BLOCK, 5 * BLOCK)
    assert ours[zero_block] == bytes(BLOCK)
    assert theirs[zero_block] == bytes([0x14]) * BLOCK
    assert theirs[: 4 * BLOCK] == ours[: 4 * BLOCK] and theirs[5 * BLOCK :] == ours[5 * BLOCK :]
    from dissect.hypervisor.disk.vhdx import VHDX

    d = VHDX(chain.child)  # finds the parent by relative_path itself
    assert d.read(chain.size) == ours
    info = vhdiinfo(chain.child)
    assert info["Disk type"] == "Differential"


def test_extents_of_own_layer_and_through_the_parent(tmp_path):
    chain = make_chain(tmp_path)
    with vhdkit.open(chain.child) as disk:
        own = list(disk.extents(through_parents=False))
        flat = list(disk.extents())
    assert own[0] == (0, BLOCK, ExtentState.PARENT)
    # block 1 is fully present and merges with block 2's first sector (every other sector here)
    assert own[1] == (BLOCK, BLOCK + 512, ExtentState.DATA)
    assert own[2] == (2 * BLOCK + 512, 512, ExtentState.PARENT)
    assert own[3] == (2 * BLOCK + 1024, 512, ExtentState.DATA)
    assert (4 * BLOCK, BLOCK, ExtentState.ZERO) in own
    # the parent is fully written, so through it everything but block 4 is data
    assert flat == [(0, 4 * BLOCK, ExtentState.DATA), (4 * BLOCK, BLOCK, ExtentState.ZERO),
                    (5 * BLOCK, chain.size - 5 * BLOCK, ExtentState.DATA)]


def test_moved_parent_is_found_by_absolute_path_when_relative_fails(tmp_path):
    moved = tmp_path / "library"
    moved.mkdir()
    chain = make_chain(tmp_path, relative_path="..\\gone\\parent.vhdx",
                       absolute_path=str(moved / "parent.vhdx"))
    expected = chain.expected_content()
    shutil.move(chain.parent, moved / "parent.vhdx")
    with vhdkit.open(chain.child) as disk:
        assert disk.parent.name == str(moved / "parent.vhdx")
        assert disk.pread(0, chain.size) == expected


def test_missing_parent_names_every_path_tried(tmp_path):
    chain = make_chain(tmp_path)
    os.rename(chain.parent, tmp_path / "elsewhere.vhdx")
    with pytest.raises(ParentNotFoundError) as err:
        vhdkit.open(chain.child)
    assert isinstance(err.value, FileNotFoundError)
    assert err.value.tried == [str(tmp_path / "parent.vhdx")]  # the C:\ path cannot be reached here
    assert str(tmp_path / "parent.vhdx") in str(err.value)


def test_without_resolving_parents_metadata_reads_but_data_needs_the_parent(tmp_path):
    chain = make_chain(tmp_path)
    with vhdkit.open(chain.child, resolve_parents=False) as disk:
        info = disk.info()
        assert info.type == "differencing"
        assert info.parent["locators"]["relative_path"] == ".\\parent.vhdx"
        assert info.parent["resolved"] is None
        assert disk.pread(BLOCK, 512) == bytes([0xC1]) * 512  # fully present: no parent needed
        with pytest.raises(ParentNotFoundError):
            disk.pread(0, 512)


def test_parent_with_another_data_write_guid_is_refused(tmp_path):
    chain = make_chain(tmp_path)
    img = Image(chain.parent)
    at = HEADER_OFFSETS[current_header(bytes(img.data))]
    img.data[at + 32] ^= 0xFF  # DataWriteGuid: as if the parent were written after the child was made
    fix_crc(img.data, at, 4096)
    img.save()
    with pytest.raises(ParentMismatchError, match="DataWriteGuid"):
        vhdkit.open(chain.child)


def test_parent_outside_the_allowed_folders_is_not_used(tmp_path):
    chain = make_chain(tmp_path)
    allowed = tmp_path / "only-here"
    allowed.mkdir()
    with pytest.raises(ParentNotFoundError, match="outside the allowed folders"):
        vhdkit.open(chain.child, allowed_parent_dirs=[allowed])
    with vhdkit.open(chain.child, allowed_parent_dirs=[tmp_path]) as disk:
        assert disk.parent is not None


def test_a_chain_that_loops_is_an_error(tmp_path):
    from .differencing import data_write_guid

    chain = make_chain(tmp_path)
    # Point the child at itself, with its own identity, so the loop is not caught as a mismatch.
    img = Image(chain.child)
    text = ".\\parent.vhdx".encode("utf-16-le")
    at = bytes(img.data).find(text)
    img.data[at : at + len(text)] = ".\\child_.vhdx".encode("utf-16-le")
    own = "{" + str(data_write_guid(chain.child)) + "}"
    old = "{" + str(data_write_guid(chain.parent)) + "}"
    at = bytes(img.data).find(old.encode("utf-16-le"))
    img.data[at : at + len(own) * 2] = own.encode("utf-16-le")
    img.save()
    os.rename(chain.child, tmp_path / "child_.vhdx")
    with pytest.raises(VhdkitError, match="cycle"):
        vhdkit.open(tmp_path / "child_.vhdx")


def test_chain_through_fsspec_memory_urls(tmp_path):
    import fsspec

    chain = make_chain(tmp_path)
    fs = fsspec.filesystem("memory")
    for p in (chain.parent, chain.child):
        fs.pipe(f"/chain/{p.name}", p.read_bytes())
    try:
        with vhdkit.open("memory://chain/child.vhdx") as disk:
            assert disk.parent.name == "memory://chain/parent.vhdx"
            assert hashlib.sha256(disk.pread(0, chain.size)).hexdigest() == hashlib.sha256(
                chain.expected_content()).hexdigest()
    finally:
        fs.rm("/chain", recursive=True)
