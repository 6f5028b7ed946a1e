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


@pytest.fixture
def moved_chain(tmp_path):
    """base <- mid <- top in a/, then base moved to b/deeper/ (mid's locators point at a/ still)."""
    a, b = tmp_path / "a", tmp_path / "b" / "deeper"
    a.mkdir()
    b.mkdir(parents=True)
    with vhdkit.create(a / "base.vhdx", 16 * MiB) as base:
        base.pwrite(0, b"B" * MiB)
    with vhdkit.create(a / "mid.avhdx", parent=a / "base.vhdx") as mid:
        mid.pwrite(MiB, b"M" * MiB)
    with vhdkit.create(a / "top.avhdx", parent=a / "mid.avhdx") as top:
        top.pwrite(2 * MiB, b"T" * MiB)
    with vhdkit.open(a / "top.avhdx") as top:
        content = top.pread(0, top.size)
    shutil.move(a / "base.vhdx", b / "base.vhdx")
    return tmp_path, a, b, content


def test_a_moved_parent_is_found_again(moved_chain):
    root, a, b, content = moved_chain
    with pytest.raises(ParentNotFoundError):
        vhdkit.open(a / "top.avhdx", allowed_parent_dirs=[root])
    done = vhdkit_cmd("set-parent", str(a / "mid.avhdx"), str(b / "base.vhdx"), "--allowed-parent-dir", str(root))
    assert done.returncode == 0, done.stderr
    assert "..\\b\\deeper\\base.vhdx" in done.stdout
    with vhdkit.open(a / "top.avhdx", allowed_parent_dirs=[root]) as top:  # mid's identity unchanged
        assert top.pread(0, top.size) == content
    assert vhdkit.check(a / "mid.avhdx", allowed_parent_dirs=[root]).verdict == "clean"
    info = run("vhdiinfo", a / "mid.avhdx").stdout
    assert f"Parent filename\t\t: {b / 'base.vhdx'}" in info


def test_the_wrong_parent_is_refused_and_nothing_changes(moved_chain):
    root, a, b, _ = moved_chain
    vhdkit.create(b / "stranger.vhdx", 16 * MiB).close()
    before = (a / "mid.avhdx").read_bytes()
    with pytest.raises(RefusedError, match="cannot be .* parent: .* is not the parent of"):
        set_parent(a / "mid.avhdx", b / "stranger.vhdx")
    assert (a / "mid.avhdx").read_bytes() == before
    refused = vhdkit_cmd("set-parent", str(a / "mid.avhdx"), str(b / "stranger.vhdx"))
    assert refused.returncode == 1 and "nothing was changed" in refused.stderr


def test_a_disk_with_no_parent_and_a_vhd_say_why(tmp_path):
    vhdkit.create(tmp_path / "plain.vhdx", 16 * MiB).close()
    with pytest.raises(RefusedError, match="not a differencing disk"):
        set_parent(tmp_path / "plain.vhdx", tmp_path / "plain.vhdx")
    vhdkit.create(tmp_path / "base.vhd", 16 * MiB).close()
    vhdkit.create(tmp_path / "child.vhd", parent=tmp_path / "base.vhd").close()
    done = vhdkit_cmd("set-parent", str(tmp_path / "child.vhd"), str(tmp_path / "base.vhd"))
    assert done.returncode == 1 and "not supported for VHD images" in done.stderr
