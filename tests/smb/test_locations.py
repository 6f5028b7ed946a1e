"""Storage locations against the tests' Samba: capacity as the server reports it, and reach
verified with each host's own credentials."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from vhdkit.placement import Host, Identity, Location
from vhdkit.units import GiB, MiB


def hosts(samba):
    return (Host("hosta", Identity(samba.user, samba.password)),
            Host("hostb", Identity("hostb", samba.other_users["hostb"])),
            Host("intruder", Identity("hostb", "not-the-password")))


def test_capacity_is_what_the_server_reports_and_follows_it_live(samba, tmp_path):
    a, _, _ = hosts(samba)
    share2 = Location(samba.url("share2").rstrip("/"), identity=a.identity)
    samba.set_free("share2", 100 * GiB, 7 * GiB)
    try:
        first = share2.measure()
        samba.set_free("share2", 100 * GiB, 9 * GiB)
        second = share2.measure()
    finally:
        samba.clear_free("share2")
    assert (first.total, first.free, second.free) == (100 * GiB, 7 * GiB, 9 * GiB)
    assert first.dialect == "3.1.1" and first.encrypted is False
    small = Location(samba.url("small"), identity=a.identity).measure()
    assert small.total == 64 * MiB
    local = Location(str(tmp_path)).measure()
    st = os.statvfs(tmp_path)
    assert local.total == st.f_blocks * st.f_frsize and local.dialect is None


def test_reach_is_verified_with_each_hosts_credentials(samba):
    a, b, intruder = hosts(samba)
    share1, share2, ro = (Location(samba.url(s)) for s in ("share1", "share2", "roshare"))
    assert share1.reach(a) == (a.name, True, True, None)
    assert share1.reach(b).reachable and share1.reach(b).writable
    refused = share2.reach(b)  # share2 admits vhdkit only
    assert not refused.reachable and "hostb" in refused.why
    wrong = share1.reach(intruder)
    assert not wrong.reachable and "refused the credentials" in wrong.why
    assert "not-the-password" not in wrong.why and samba.password not in repr(a)
    read_only = ro.reach(a)
    assert read_only.reachable and not read_only.writable and "cannot write" in read_only.why
    # a wrong password after a good login of the same user is still caught: reach logs in afresh
    same_user_wrong = Host("again", Identity(samba.user, "wrong"))
    assert share1.reach(a).reachable and not share1.reach(same_user_wrong).reachable


def encrypted_tcons(samba, share):
    """The server's count of encrypted tree connects to ``share`` (smbstatus)."""
    return sum(1 for t in samba.sessions() if t["share"] == share and t["encrypted"])


def fresh_sealed_pool():
    from vhdkit.storage import smb

    smb._close_sealed_pool()  # noqa: SLF001 - so the server sees only what the test opens next
    deadline = time.monotonic() + 5
    while smb._SEALED_POOL and time.monotonic() < deadline:  # noqa: SLF001
        time.sleep(0.05)


def test_encryption_on_request_is_what_the_server_sees(samba, monkeypatch):
    import vhdkit
    from vhdkit.storage.smb import SmbStore

    a, _, _ = hosts(samba)
    plain = Location(samba.url("share1"), identity=a.identity).measure()
    sealed = Location(samba.url("share1"), identity=a.identity, encrypt=True).measure()
    assert (plain.encrypted, sealed.encrypted) == (False, True)
    # a share the server seals is reported encrypted without asking
    assert Location(samba.url("secure"), identity=a.identity).measure().encrypted is True
    monkeypatch.setenv("VHDKIT_SMB_PASSWORD", samba.password)
    fresh_sealed_pool()
    wait_for(lambda: encrypted_tcons(samba, "share1") == 0)
    url = samba.url("share1", f"sealed-{os.urandom(4).hex()}.raw")
    with SmbStore(url, create=True, encrypt=True) as store:
        store.pwrite(0, b"secret" * 1000)
        assert store.pread(0, 6) == b"secret"
        assert encrypted_tcons(samba, "share1") == 1  # the server's view, not the client's
    assert samba.share_path("share1").joinpath(url.rsplit("/", 1)[1]).read_bytes()[:6] == b"secret"
    # a placement's policy reaches the vhdkit.create/open calls made by URL
    fresh_sealed_pool()
    wait_for(lambda: encrypted_tcons(samba, "share1") == 0)
    with Location(samba.url("share1"), identity=a.identity, encrypt=True).policy():
        vhdkit.create(samba.url("share1", f"sealed-{os.urandom(4).hex()}.vhdx"), GiB).close()
        assert encrypted_tcons(samba, "share1") == 1
    assert not vhdkit.storage.smb._SEALED_SERVERS  # noqa: SLF001 - the policy ends with the block


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server never got there"
        time.sleep(0.05)


def test_a_second_file_server_that_offers_no_encryption(samba):
    from vhdkit.errors import StorageError
    from vhdkit.placement import DiskSpec, VmSpec, rate
    from vhdkit.storage.smb import SmbStore

    a, _, _ = hosts(samba)
    with second_server(samba) as (second, ident):
        other = Location(second.url("vms"), identity=ident)
        capacity = other.measure()
        assert (capacity.dialect, capacity.encrypted) == ("3.1.1", False)
        assert other.reach(Host("hosta", ident)).writable
        assert not other.reach(a).reachable  # the first server's password is not the second's
        with pytest.raises(StorageError, match="does not offer SMB 3 encryption"):
            Location(second.url("vms"), identity=ident, encrypt=True).measure()
        with pytest.raises(StorageError, match="encryption"):
            SmbStore(second.url("vms", "x.raw"), create=True, encrypt=True, username=second.user,
                     password=second.password)
        assert list(second.share_path("vms").iterdir()) == []  # nothing went over in the clear
        spec = VmSpec("sec01", ("hosta",), (DiskSpec("os.vhdx", GiB),), require_encryption=True)
        rejected = rate(spec, [other], [Host("hosta", ident)])[0].rejected
        assert rejected[0] == "does not offer SMB 3 encryption, and the VM requires it"
        assert all(why.endswith("does not offer SMB 3 encryption") for why in rejected[1:]), rejected


@contextlib.contextmanager
def second_server(samba):
    """A second file server on 127.0.0.2 with one share, "vms", that offers no encryption."""
    from .samba import Samba

    second = Samba(Path("/tmp/vhdkit-test-smb2"), host="127.0.0.2", port=samba.port, shares=("vms",),
                   read_only=(), password="second-pw", encryption="off")
    try:
        second.start(fresh=True)
    except Exception as e:  # noqa: BLE001 - 127.0.0.2 must be on lo: the server adds it if it can
        raise AssertionError(f"second server: {e}") from e
    try:
        yield second, Identity(second.user, second.password)
    finally:
        second.stop()
