"""The placement planner against the tests' Samba: free space as the server reports it (faked
per share), reach as each host's credentials get it, every rejection explained."""

from __future__ import annotations

import pytest

from vhdkit.errors import PlacementError
from vhdkit.placement import DiskSpec, Host, Identity, Location, VmSpec, choose, rate
from vhdkit.units import GiB


@pytest.fixture
def world(samba, tmp_path):
    hosta = Host("hosta", Identity(samba.user, samba.password), local=True)
    hostb = Host("hostb", Identity("hostb", samba.other_users["hostb"]))
    locations = [Location(samba.url(s), identity=hosta.identity) for s in ("share1", "share2", "small")]
    locations.append(Location(str(tmp_path)))
    samba.set_free("share1", 100 * GiB, 50 * GiB)
    samba.set_free("share2", 100 * GiB, 90 * GiB)
    yield samba, (hosta, hostb), locations
    samba.clear_free("share1")
    samba.clear_free("share2")


def vm(hosts, size=20 * GiB, **kw):
    return VmSpec("web01", hosts, (DiskSpec("os.vhdx", size, "fixed"),), **kw)


def test_most_room_wins_for_one_host_and_the_ranking_follows_the_server(world):
    samba, (hosta, hostb), locations = world
    best = choose(vm(("hosta",)), locations, [hosta, hostb])
    assert best.location.where == samba.url("share2")  # 90 GiB free beats 50
    samba.set_free("share1", 100 * GiB, 95 * GiB)
    assert choose(vm(("hosta",)), locations, [hosta, hostb]).location.where == samba.url("share1")


def test_a_live_migratable_vm_goes_only_where_both_hosts_reach(world):
    samba, (hosta, hostb), locations = world
    ratings = {r.location.where: r for r in rate(vm(("hosta", "hostb")), locations, [hosta, hostb])}
    assert [w for w, r in ratings.items() if r.suitable] == [samba.url("share1")]
    assert any("hostb" in why for why in ratings[samba.url("share2")].rejected)  # hostb's login is refused
    assert any("too small" in why for why in ratings[samba.url("small")].rejected)
    local = [r for w, r in ratings.items() if not w.startswith("smb://")][0]
    assert any("not shared with hostb" in why for why in local.rejected)


def test_when_nothing_fits_every_location_says_why(world):
    samba, (hosta, hostb), locations = world
    with pytest.raises(PlacementError) as caught:
        choose(vm(("hosta", "hostb"), size=2000 * GiB), locations, [hosta, hostb])
    text = str(caught.value)
    for location in locations:
        assert location.where in text
    assert text.count("too small") >= 3 and samba.password not in text


def test_headroom_and_spec_parsing():
    spec = VmSpec.from_dict({"name": "db", "hosts": ["hosta"], "disks": [
        {"name": "os.vhdx", "virtual_size": "60G"}, {"name": "data.vhdx", "virtual_size": "100G", "type": "fixed"}],
        "checkpoints": [{"disk": "os.vhdx", "size": "2G"}], "saved_state": "4G"})
    assert spec.needed() == 1 * 2**20 + 4 * 2**20 + 100 * GiB + 2 * GiB + 4 * GiB
    assert spec._replace(reserve_full=True).needed() == 1 * 2**20 + 160 * GiB + 2 * GiB + 4 * GiB
    with pytest.raises(PlacementError, match="unknown VM spec keys: colour"):
        VmSpec.from_dict({"name": "x", "hosts": [], "colour": "red"})
