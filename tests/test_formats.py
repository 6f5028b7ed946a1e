"""The format registry: one record per format, every lookup through it, and the file name's
extension and the format asked for never disagreeing in what vhdkit writes."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

import vhdkit
from vhdkit import formats
from vhdkit.vhd import layout as vhd_layout
from vhdkit.vhdx import layout as vhdx_layout

from .conftest import qemu_img_info, require_tool
from .test_cli_create import vhdkit_cmd

GiB = 1 << 30


@pytest.mark.parametrize("fmt", formats.FORMATS, ids=formats.NAMES)
@pytest.mark.parametrize("field", ["disk", "plan", "new_file_size", "resize", "compact", "check", "repair"])
def test_every_implementation_a_record_names_exists(fmt, field):
    if getattr(fmt, field) is None:
        assert field in ("compact", "check", "repair") and not fmt.structured
        return
    assert callable(fmt.load(field))


def test_detection_signatures_are_the_layouts():
    assert formats.VHDX_SIGNATURE == vhdx_layout.FILE_IDENTIFIER_SIGNATURE
    assert formats.VHD_COOKIE == vhd_layout.FOOTER_COOKIE
    assert formats.VHD_FOOTER_SIZE == vhd_layout.FOOTER_SIZE


@pytest.mark.parametrize("name, expected", [
    ("a.vhdx", "vhdx"), ("A.AVHDX", "vhdx"), ("b.vhd", "vhd"), ("c.avhd", "vhd"), ("d.img", "raw"), ("e.raw", "raw"),
])
def test_the_extension_names_the_format(name, expected):
    assert formats.by_extension(name).name == expected
    assert formats.for_target(name).name == expected


def test_a_format_the_extension_contradicts_is_refused():
    with pytest.raises(ValueError, match=r"s\.vhd is named as a VHD file but the format asked for is VHDX"):
        formats.for_target("s.vhd", "vhdx")
    with pytest.raises(ValueError, match="cannot tell the format"):
        formats.for_target("noext")
    assert formats.for_target("noext", "vhd") is formats.VHD
    with pytest.raises(ValueError, match="format must be one of vhdx, vhd, raw"):
        formats.get("qcow2")


def test_create_blank_small_vhd_is_a_vhd_of_exactly_16_gib(tmp_path):
    path = tmp_path / "s.vhd"
    r = vhdkit_cmd("create", str(path), "--blank", "small")
    assert r.returncode == 0, r.stderr
    with vhdkit.open(path) as disk:
        assert (disk.format_name, disk.size) == ("vhd", 16 * GiB)
    require_tool("qemu-img")
    info = qemu_img_info(path, "vpc")
    assert info["format"] == "vpc" and info["virtual-size"] == 16 * GiB


def test_create_refuses_a_vhdx_named_vhd_and_writes_nothing(tmp_path):
    for name, fmt in (("s.vhd", "vhdx"), ("s.vhdx", "vhd")):
        r = vhdkit_cmd("create", str(tmp_path / name), "--size", "1G", "--format", fmt)
        assert r.returncode != 0
        assert "named as a" in r.stderr and f"--format {fmt}" not in r.stdout
        assert not (tmp_path / name).exists() and os.listdir(tmp_path) == []


def test_convert_and_migrate_targets_share_the_map(tmp_path):
    """convert, create and the migration service read one table: .avhd is a VHD everywhere."""
    src = tmp_path / "src.vhdx"
    vhdkit.create(src, 64 << 20).close()
    vhdkit.convert(src, tmp_path / "t.avhd")
    with vhdkit.open(tmp_path / "t.avhd") as disk:
        assert disk.format_name == "vhd"
    vhdkit.create(tmp_path / "n.avhd", 64 << 20).close()
    with vhdkit.open(tmp_path / "n.avhd") as disk:
        assert disk.format_name == "vhd"


def test_import_vhdkit_loads_no_migration_nbd_smb_netvirt_or_vmbus_code():
    code = "import vhdkit, sys; print(' '.join(sorted(m for m in sys.modules if m.startswith('vhdkit'))))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "vhdkit" in loaded
    heavy = ("vhdkit.copy", "vhdkit.migration", "vhdkit.nbd", "vhdkit.storage.smb", "vhdkit.netvirt", "vhdkit.vmbus",
             "vhdkit.placement", "vhdkit.library")
    assert [m for m in loaded if m.startswith(heavy)] == []


def test_modules_and_the_functions_of_the_root_do_not_shadow_each_other():
    import vhdkit.ops.check  # noqa: F401 - a submodule import must not replace vhdkit.check
    import vhdkit.validation.report  # noqa: F401

    assert callable(vhdkit.check) and callable(vhdkit.open) and callable(vhdkit.create)
    assert vhdkit.check.__module__ == "vhdkit.ops.check"


def test_open_takes_a_file_object_and_says_its_mode(tmp_path):
    path = tmp_path / "d.vhdx"
    with vhdkit.create(path, 16 << 20) as disk:
        disk.pwrite(4096, b"hello")
    raw = io.BytesIO(path.read_bytes())
    with vhdkit.open(fileobj=raw) as disk:
        assert disk.mode == "r" and disk.format_name == "vhdx" and disk.pread(4096, 5) == b"hello"
        with pytest.raises(io.UnsupportedOperation):  # ReadOnlyError is one
            disk.pwrite(0, b"x")
        with pytest.raises(vhdkit.ReadOnlyError):
            disk.pwrite(0, b"x")
    assert not raw.closed  # the caller's object stays the caller's
    with open(path, "r+b") as f, vhdkit.open(fileobj=f, mode="r+") as disk:
        assert disk.mode == "r+"
        disk.pwrite(8192, b"world")
    with vhdkit.open(path) as disk:
        assert disk.pread(8192, 5) == b"world"
    with pytest.raises(ValueError, match="'r' \\(read-only.*'r\\+' \\(read-write.*not 'w'"):
        vhdkit.open(path, "w")
