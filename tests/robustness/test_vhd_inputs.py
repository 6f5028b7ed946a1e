"""The robustness contract for VHD: any bytes open and read, or raise VhdkitError; nothing else.
Mutations re-fix the checksums they break, so the checks behind the checksums get exercised."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vhdkit
from vhdkit.errors import VhdkitError
from vhdkit.vhd import layout as L

MiB = 1 << 20


class ImageBytes(bytes):
    def __repr__(self) -> str:
        return f"<{len(self)} image bytes>"


@pytest.fixture(scope="module")
def small_vhds(tmp_path_factory) -> dict[str, bytes]:
    """A dynamic VHD with data, and a differencing child of it, both tiny."""
    folder = tmp_path_factory.mktemp("vhd")
    with vhdkit.create(folder / "base.vhd", 6 * MiB, format="vhd") as disk:
        disk.pwrite(0, b"\x5a" * MiB)
        disk.pwrite(4 * MiB + 512, b"\x6b" * 4096)
    with vhdkit.create(folder / "child.vhd", parent=folder / "base.vhd", format="vhd") as disk:
        disk.pwrite(2 * MiB + 1024, b"\x7c" * 1536)
    return {name: ImageBytes((folder / f"{name}.vhd").read_bytes()) for name in ("base", "child")}


def open_and_read_all(path) -> None:
    try:
        with vhdkit.open(path, format="vhd", resolve_parents=False, tolerate_checksum=True) as disk:
            disk.info()
            list(disk.extents(through_parents=False))
            pos = 0
            while pos < disk.size:
                try:
                    got = disk.pread(pos, 4 * MiB)
                except vhdkit.ParentNotFoundError:
                    got = b"x" * min(4 * MiB, disk.size - pos)  # fine: no parent was opened
                assert got
                pos += len(got)
    except VhdkitError:
        pass


def _fix(buf: bytearray) -> None:
    """Recompute the checksums of the footer copy, the dynamic header and the end footer."""
    for at, length, field in ((0, 512, L.FOOTER_CHECKSUM_OFFSET), (len(buf) - 512, 512, L.FOOTER_CHECKSUM_OFFSET),
                              (512, 1024, L.DYNAMIC_HEADER_CHECKSUM_OFFSET)):
        if at < 0 or at + length > len(buf):
            continue
        part = buf[at : at + length]
        struct.pack_into(">I", buf, at + field, L.checksum(part, field))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["base", "child"]),
       edits=st.lists(st.tuples(st.sampled_from(["footer", "header", "bat", "end"]), st.integers(0, 1023),
                                st.binary(min_size=1, max_size=8)), min_size=1, max_size=4),
       fix=st.booleans(), cut=st.integers(0, 3))
def test_mutated_vhds(small_vhds, tmp_path, which, edits, fix, cut):
    buf = bytearray(small_vhds[which])
    bases = {"footer": 0, "header": 512, "bat": 1536, "end": len(buf) - 512}
    spans = {"footer": 512, "header": 1024, "bat": 512, "end": 512}
    for kind, offset, patch in edits:
        at = bases[kind] + offset % spans[kind]
        buf[at : at + len(patch)] = patch
    if fix:
        _fix(buf)
    if cut:
        del buf[len(buf) - cut * 1000 :]
    path = tmp_path / "m.vhd"
    path.write_bytes(bytes(buf))
    open_and_read_all(path)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000), where=st.sampled_from(["start", "end"]))
def test_random_bytes_with_a_vhd_cookie(tmp_path, data, where):
    cookie = b"conectix"
    blob = cookie + data if where == "start" else data + cookie + bytes(504)
    path = tmp_path / "r.vhd"
    path.write_bytes(blob)
    open_and_read_all(path)
