"""`vhdkit set-parent` (Set-VHD -ParentPath): a chain whose parent moved is pointed at it again;
only the locator's paths change (identities and data stay, so grandchildren still open); the
wrong parent is refused with nothing changed; libvhdi reads the new path."""

from __future__ import annotations

import shutil

import pytest

import vhdkit
from vhdkit.errors import ParentNotFoundError, RefusedError
from vhdkit.ops.reparent import set_parent

from .conftest import run
from .test_cli import vhdkit_cmd

MiB = 1 << 20


@pytest.fixture(params=["vhdx", "vhd"])
def moved_chain(tmp_path, request):
    """base <- mid <- top in a/, then base moved to b/deeper/ (mid's locators point at a/ still)."""
    ext = request.param
    a, b = tmp_path / "a", tmp_path / "b" / "deeper"
    a.mkdir()
    b.mkdir(parents=True)
    with vhdkit.create(a / f"base.{ext}", 16 * MiB) as base:
        base.pwrite(0, b"B" * MiB)
    with vhdkit.create(a / f"mid.a{ext}", parent=a / f"base.{ext}") as mid:
        mid.pwrite(MiB, b"M" * MiB)
    with vhdkit.create(a / f"top.a{ext}", parent=a / f"mid.a{ext}") as top:
        top.pwrite(2 * MiB, b"T" * MiB)
    with vhdkit.open(a / f"top.a{ext}") as top:
        content = top.pread(0, top.size)
    shutil.move(a / f"base.{ext}", b / f"base.{ext}")
    return tmp_path, a, b, content, ext


def test_a_moved_parent_is_found_again(moved_chain):
    root, a, b, content, ext = moved_chain
    mid, top = a / f"mid.a{ext}", a / f"top.a{ext}"
    with pytest.raises(ParentNotFoundError):
        vhdkit.open(top, allowed_parent_dirs=[root])
    size_before = mid.stat().st_size
    done = vhdkit_cmd("set-parent", str(mid), str(b / f"base.{ext}"), "--allowed-parent-dir", str(root))
    assert done.returncode == 0, done.stderr
    assert f"..\\b\\deeper\\base.{ext}" in done.stdout
    with vhdkit.open(top, allowed_parent_dirs=[root]) as opened:  # mid's identity unchanged
        assert opened.pread(0, opened.size) == content
    assert vhdkit.check(mid, allowed_parent_dirs=[root]).verdict == "clean"
    info = run("vhdiinfo", mid).stdout  # VHDX: the locator's path; VHD: the header's parent name
    assert f"Parent filename\t\t: {b / 'base.vhdx' if ext == 'vhdx' else 'base.vhd'}" in info
    if ext == "vhd":  # the paths fit the old spaces: the header went back, the file is as long as before
        assert mid.stat().st_size == size_before
        with vhdkit.open(mid, resolve_parents=False) as opened:
            assert opened.header_offset == 512 and opened.parent_name == "base.vhd"
            assert opened.footer_info.offset == size_before - 512
        assert mid.read_bytes()[:512] == mid.read_bytes()[-512:]  # the footer and its copy agree


def test_the_wrong_parent_is_refused_and_nothing_changes(moved_chain):
    root, a, b, _, ext = moved_chain
    mid = a / f"mid.a{ext}"
    vhdkit.create(b / f"stranger.{ext}", 16 * MiB).close()
    before = mid.read_bytes()
    with pytest.raises(RefusedError, match="cannot be .* parent: .* (is not the parent of|the child expects)"):
        set_parent(mid, b / f"stranger.{ext}")
    assert mid.read_bytes() == before
    refused = vhdkit_cmd("set-parent", str(mid), str(b / f"stranger.{ext}"))
    assert refused.returncode == 1 and "nothing was changed" in refused.stderr


def test_a_disk_with_no_parent_says_why(tmp_path):
    for ext in ("vhdx", "vhd"):
        vhdkit.create(tmp_path / f"plain.{ext}", 16 * MiB).close()
        with pytest.raises(RefusedError, match="not a differencing disk"):
            set_parent(tmp_path / f"plain.{ext}", tmp_path / f"plain.{ext}")
