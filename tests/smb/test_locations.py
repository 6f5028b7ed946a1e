"""Storage locations against the tests' Samba: capacity as the server reports it, and reach
verified with each host's own credentials."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_encryption_on_request_and_a_second_file_server(samba, tmp_path):
    from .samba import Samba

    a, _, _ = hosts(samba)
    plain = Location(samba.url("share1"), identity=a.identity).measure()
    sealed = Location(samba.url("share1"), identity=a.identity, encrypt=True).measure()
    assert (plain.encrypted, sealed.encrypted) == (False, True)
    second = Samba(Path("/tmp/vhdkit-test-smb2"), host="127.0.0.2", port=samba.port, shares=("vms",),
                   read_only=(), password="second-pw")
    try:
        second.start(fresh=True)
    except Exception as e:  # noqa: BLE001 - 127.0.0.2 must be on lo: the server adds it if it can
        raise AssertionError(f"second server: {e}") from e
    try:
        other = Location(second.url("vms"), identity=Identity(second.user, second.password))
        assert other.measure().dialect == "3.1.1"
        assert other.reach(Host("hosta", Identity(second.user, second.password))).writable
        assert not other.reach(a).reachable  # the first server's password is not the second's
    finally:
        second.stop()
