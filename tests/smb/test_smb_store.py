"""Images on an SMB 3 share of the tests' own Samba: created, written, read and checked over SMB,
compared with the share's backing files read locally."""

from __future__ import annotations

import logging
import uuid

import pytest

import vhdkit
from vhdkit.errors import ImageExistsError, ImageInUseError, StorageError
from vhdkit.units import GiB, MiB

from ..conftest import require_tool, run
from ..test_cli import vhdkit_cmd


def name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def test_a_16g_dynamic_vhdx_made_on_a_share_stays_sparse_and_checks_clean(smb_env):
    require_tool("qemu-img")
    samba = smb_env
    n = name()
    url = samba.url("share1", f"{n}.vhdx")
    with vhdkit.create(url, 16 * GiB) as disk:
        disk.pwrite(0, b"over smb " * 1000)
        disk.pwrite(5 * GiB + 512, b"far away" * 512)
        assert disk.store.allocated_bytes() < 8 * MiB  # the server reports a sparse file
    local = samba.share_path("share1") / f"{n}.vhdx"
    assert local.stat().st_blocks * 512 < 8 * MiB < local.stat().st_size  # and is one, on its disk
    report = vhdkit.check(url)
    assert (report.verdict, report.findings) == ("clean", [])
    assert run("qemu-img", "check", local, check=False).returncode == 0
    with vhdkit.open(local) as disk:  # written over SMB, read locally
        assert disk.pread(0, 9) == b"over smb " and disk.pread(5 * GiB + 512, 8) == b"far away"
    with vhdkit.open(local, "r+") as disk:  # written locally, read over SMB
        disk.pwrite(3 * GiB, b"local write")
    with vhdkit.open(url) as disk:
        assert disk.size == 16 * GiB and disk.pread(3 * GiB, 11) == b"local write"


def test_create_refuses_an_existing_image_and_a_second_writer(smb_env):
    samba = smb_env
    url = samba.url("share2", f"{name()}.vhdx")
    vhdkit.create(url, GiB).close()
    with pytest.raises(ImageExistsError):
        vhdkit.create(url, 2 * GiB)
    with vhdkit.open(url, "r+"):
        with pytest.raises(ImageInUseError):
            vhdkit.open(url, "r+")
        with vhdkit.open(url) as reader:  # readers may come while one writer holds it
            assert reader.size == GiB
    vhdkit.create(url, 2 * GiB, overwrite=True).close()
    with vhdkit.open(url) as disk:
        assert disk.size == 2 * GiB
    assert not [p for p in samba.share_path("share2").iterdir() if p.name.endswith(".vhdkit-tmp")]


def test_read_only_share_and_missing_files_are_clear_errors(smb_env):
    samba = smb_env
    with pytest.raises(StorageError):
        vhdkit.create(samba.url("roshare", "x.vhdx"), GiB)
    assert list(samba.share_path("roshare").iterdir()) == []
    with pytest.raises(vhdkit.ImageNotFoundError):
        vhdkit.open(samba.url("share1", "no-such.vhdx"))


def test_the_password_never_appears_in_output_or_errors(samba, monkeypatch, tmp_path):
    url = samba.url("share1", f"{name()}.vhdx")
    monkeypatch.setenv("VHDKIT_SMB_PASSWORD", samba.password)
    made = vhdkit_cmd("create", url, "--size", "1G")
    info = vhdkit_cmd("info", url, "--json")
    checked = vhdkit_cmd("check", url, "--json")
    assert made.returncode == info.returncode == checked.returncode == 0, made.stderr + info.stderr
    monkeypatch.setenv("VHDKIT_SMB_PASSWORD", "wrong-" + samba.password)
    from smbclient import reset_connection_cache

    reset_connection_cache()  # a pooled session would hide the wrong password (specs/smb.md)
    refused = vhdkit_cmd("info", url)
    assert refused.returncode == 1 and "cannot connect" in refused.stderr
    for out in (made, info, checked, refused):
        assert samba.password not in out.stdout + out.stderr
    with_password = url.replace(f"{samba.user}@", f"{samba.user}:{samba.password}@")
    monkeypatch.delenv("VHDKIT_SMB_PASSWORD")
    shown = vhdkit_cmd("info", with_password)
    assert shown.returncode == 0 and samba.password not in shown.stdout + shown.stderr
    with pytest.raises(StorageError) as caught:
        vhdkit.open(url.replace(f"{samba.user}@", f"{samba.user}:wrong-{samba.password}@").replace("share1", "nope"))
    assert samba.password not in str(caught.value)


def test_the_password_never_appears_in_a_log_line(samba, monkeypatch, caplog):
    """Every logger at DEBUG (vhdkit's, smbprotocol's, spnego's) through a good session and a
    refused one: the password is in no record."""
    from smbclient import reset_connection_cache

    caplog.set_level(logging.DEBUG)
    url = samba.url("share1", f"{name()}.vhdx")
    monkeypatch.setenv("VHDKIT_SMB_PASSWORD", samba.password)
    reset_connection_cache()  # log in afresh, with the records caught
    with vhdkit.create(url, GiB) as disk:
        disk.pwrite(0, b"logged" * 100)
    assert vhdkit.check(url).verdict == "clean"
    reset_connection_cache()
    with pytest.raises(StorageError):  # a password in the URL comes first (before any remembered one)
        vhdkit.open(url.replace(f"{samba.user}@", f"{samba.user}:wrong-{samba.password}@"))
    reset_connection_cache()
    assert len(caplog.records) > 50  # smbprotocol did talk at DEBUG
    text = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records)
    assert samba.password not in text


def test_free_space_is_what_the_server_says(smb_env):
    import smbclient

    samba = smb_env
    samba.set_free("share2", 100 * GiB, 7 * GiB)
    try:
        vol = smbclient.stat_volume(rf"\\{samba.host}\share2", port=samba.port, username=samba.user,
                                    password=samba.password)
        assert (vol.total_size, vol.actual_available_size) == (100 * GiB, 7 * GiB)
    finally:
        samba.clear_free("share2")
    small = smbclient.stat_volume(rf"\\{samba.host}\small", port=samba.port, username=samba.user,
                                  password=samba.password)
    assert small.total_size == 64 * MiB


def test_the_server_stopping_mid_write_is_a_storage_error_and_a_retry_after_restart_works(smb_env):
    samba = smb_env
    url = samba.url("share1", f"{name()}.vhdx")
    vhdkit.create(url, GiB, block_size=MiB).close()
    disk = vhdkit.open(url, "r+")
    disk.pwrite(0, b"a" * MiB)
    disk.flush()
    samba.stop()
    try:
        with pytest.raises(StorageError) as caught:
            disk.pwrite(8 * MiB, b"b" * MiB)
            disk.flush()
        assert samba.password not in str(caught.value) and samba.url("share1", "") .split("@")[1] in str(caught.value)
        try:
            disk.close()
        except StorageError:
            pass  # closing a disk whose server is gone: said, nothing more to do
    finally:
        samba.start()
    with vhdkit.open(url, "r+") as disk:  # the retry, after the restart
        assert disk.pread(0, MiB) == b"a" * MiB  # what was flushed before the stop is there
        disk.pwrite(8 * MiB, b"b" * MiB)
    with vhdkit.open(url) as disk:
        assert disk.pread(8 * MiB, MiB) == b"b" * MiB
    assert vhdkit.check(url).verdict == "clean"


@pytest.mark.parametrize("direction", ["to the share", "from the share"])
def test_convert_to_and_from_a_share(smb_env, tmp_path, direction):
    samba = smb_env
    local = tmp_path / "local.vhdx"
    remote = samba.url("share2", f"{name()}.vhd")
    if direction == "to the share":
        with vhdkit.create(local, 64 * MiB) as disk:
            disk.pwrite(3 * MiB, b"payload" * 1000)
        vhdkit.convert(local, remote)
        source, target = local, remote
    else:
        with vhdkit.create(remote, 64 * MiB, format="vhd") as disk:
            disk.pwrite(3 * MiB, b"payload" * 1000)
        vhdkit.convert(remote, local)
        source, target = remote, local
    with vhdkit.open(source) as a, vhdkit.open(target) as b:
        assert a.size == b.size and a.pread(0, 8 * MiB) == b.pread(0, 8 * MiB)


def test_server_side_copy_stays_sparse_and_moves_no_data(smb_env):
    from vhdkit.storage.smb import SmbStore

    samba = smb_env
    src_url, dst_url = samba.url("share1", f"{name()}.vhdx"), samba.url("share2", f"{name()}.vhdx")
    with vhdkit.create(src_url, 16 * GiB) as disk:
        disk.pwrite(GiB, b"\x11" * (3 * MiB))
        disk.pwrite(9 * GiB, b"\x22" * MiB)
    source, target = SmbStore(src_url), SmbStore(dst_url, create=True)
    try:
        copied = source.copy_on_server(target)
        allocated = target.allocated_bytes()
    finally:
        source.close()
        target.close()
    src_file = samba.share_path("share1") / src_url.rsplit("/", 1)[1]
    dst_file = samba.share_path("share2") / dst_url.rsplit("/", 1)[1]
    assert dst_file.read_bytes() == src_file.read_bytes()  # byte for byte, across shares
    assert copied < 16 * MiB and allocated < 16 * MiB < dst_file.stat().st_size  # sparse stays sparse
    assert dst_file.stat().st_blocks * 512 < 16 * MiB
    with vhdkit.open(dst_url) as disk:
        assert disk.pread(9 * GiB, 4) == b"\x22" * 4
    from pathlib import Path

    from .samba import Samba

    second = Samba(Path("/tmp/vhdkit-test-smb2"), host="127.0.0.2", port=samba.port, shares=("vms",), read_only=())
    second.start(fresh=True)
    try:
        elsewhere = SmbStore(second.url("vms", "copy.vhdx"), create=True, password=second.password)
        with SmbStore(src_url) as source, elsewhere:
            with pytest.raises(StorageError, match="different servers"):
                source.copy_on_server(elsewhere)
        assert (second.share_path("vms") / "copy.vhdx").stat().st_size == 0  # refused before touching it
    finally:
        second.stop()
