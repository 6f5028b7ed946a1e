"""The placement planner against the tests' Samba: free space as the server reports it (faked
per share), reach as each host's credentials get it, every rejection explained."""

from __future__ import annotations

import pytest

import os

import vhdkit
from vhdkit.errors import PlacementError
from vhdkit.placement import DiskSpec, Host, Identity, Location, VmSpec, choose, rate
from vhdkit.units import GiB, MiB


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
    fixed_file = 100 * GiB + 4 * 2**20  # the data and, before it, headers, log, metadata and BAT
    assert spec.needed() == 1 * 2**20 + 4 * 2**20 + fixed_file + 2 * GiB + 4 * GiB
    assert spec._replace(reserve_full=True).needed() == 1 * 2**20 + 60 * GiB + fixed_file + 2 * GiB + 4 * GiB
    with pytest.raises(PlacementError, match="unknown VM spec keys: colour"):
        VmSpec.from_dict({"name": "x", "hosts": [], "colour": "red"})


def test_place_lays_out_hyperv_folders_with_a_blank_16g_disk_straight_on_the_share(world):
    from vhdkit.placement import place

    import vhdkit

    samba, (hosta, hostb), _ = world
    spec = VmSpec("app01", ("hosta", "hostb"), (DiskSpec("os.vhdx", 16 * GiB),), checkpoints=(("os.vhdx", GiB),))
    best = choose(spec, [Location(samba.url("share1"), identity=hosta.identity)], [hosta, hostb])
    placed = place(spec, best.location)  # the location's identity carries the password, not the environment
    backing = samba.share_path("share1") / "app01"
    assert sorted(p.name for p in backing.iterdir()) == ["Snapshots", "Virtual Hard Disks", "Virtual Machines"]
    disk = backing / "Virtual Hard Disks" / "os.vhdx"
    with vhdkit.open(disk) as d:
        assert d.size == 16 * GiB and d.disk_type == "dynamic"
    child = backing / "Virtual Hard Disks" / "os_checkpoint1.avhdx"
    with vhdkit.open(child) as c:  # the checkpoint finds its parent by the relative locator
        assert c.disk_type == "differencing" and c.parent is not None
    assert disk.stat().st_blocks * 512 < 16 * 2**20  # sparse on the server
    assert len(placed.files) == 3 and placed.where.endswith("/app01")


def test_a_failed_placement_leaves_nothing_behind_and_names_the_file(world):
    from vhdkit.placement import place

    samba, (hosta, _), _ = world
    spec = VmSpec("broken01", ("hosta",), (DiskSpec("a.vhdx", GiB), DiskSpec("b.vhd", 3 * 2**40)))  # > 2040 GiB
    with pytest.raises(PlacementError) as caught:
        place(spec, Location(samba.url("share1"), identity=hosta.identity))
    assert "b.vhd" in str(caught.value) and "removed" in str(caught.value)
    assert not (samba.share_path("share1") / "broken01").exists()


@pytest.mark.parametrize("name, size, kind", [("a.vhdx", 20 * MiB, "fixed"), ("b.vhdx", 96 * MiB, "fixed"),
                                              ("c.vhd", 20 * MiB, "fixed"), ("d.vhdx", 3 * GiB, "dynamic"),
                                              ("e.vhd", 3 * GiB, "dynamic")])
def test_a_new_disk_takes_the_room_the_planner_counts(tmp_path, name, size, kind):
    disk = DiskSpec(name, size, kind)
    vhdkit.create(tmp_path / name, size, format=disk.format, type=kind).close()
    assert disk.file_bytes() == os.path.getsize(tmp_path / name)


def test_filling_the_small_share_for_real_during_place_fails_cleanly(world):
    """The share had room when rated; another tenant's file took it before the second disk was
    made: the server refuses the reservation, and nothing of the VM is left on the share."""
    from vhdkit.placement import place

    samba, (hosta, _), _ = world
    small = Location(samba.url("small"), identity=hosta.identity)
    spec = VmSpec("full01", ("hosta",), (DiskSpec("os.vhdx", 20 * MiB, "fixed"), DiskSpec("data.vhd", 8 * MiB, "fixed")))
    backing = samba.share_path("small")
    assert spec.needed() == (1 + 36 + 8) * MiB + 512
    assert choose(spec, [small], [hosta]).location is small  # 64 MiB, 45 MiB needed, 6.4 MiB headroom
    tenant = backing / "other-tenant.bin"
    try:
        with open(tenant, "wb") as f:  # a real 24 MiB on the share's own tmpfs: 40 MiB are left
            f.write(os.urandom(24 * MiB))
        used_before = os.statvfs(backing).f_bfree
        with pytest.raises(PlacementError) as caught:
            place(spec, small)
        text = str(caught.value)
        assert "data.vhd" in text and "full" in text and "removed" in text, text
        assert sorted(p.name for p in backing.iterdir()) == ["other-tenant.bin"]  # no folder, no temp file
        assert os.statvfs(backing).f_bfree == used_before  # and every reserved byte given back
        # what fits now is placed, and its fixed disk really holds its space on the server
        ratings = rate(spec, [small], [hosta])
        assert not ratings[0].suitable and "too small" in ratings[0].rejected[0]
        smaller = spec._replace(name="fits01", disks=spec.disks[:1], headroom=0.0)
        placed = place(smaller, choose(smaller, [small], [hosta]).location)
        disk = backing / "fits01" / "Virtual Hard Disks" / "os.vhdx"
        assert disk.stat().st_blocks * 512 >= 36 * MiB and len(placed.files) == 2
        with vhdkit.open(disk) as d:
            assert (d.size, d.disk_type) == (20 * MiB, "fixed")
    finally:
        tenant.unlink(missing_ok=True)
        import shutil

        shutil.rmtree(backing / "fits01", ignore_errors=True)


def test_a_vm_that_requires_encryption_is_placed_encrypted(world):
    from vhdkit.placement import place

    from .test_locations import encrypted_tcons, fresh_sealed_pool, wait_for

    samba, (hosta, _), _ = world
    spec = VmSpec("sec02", ("hosta",), (DiskSpec("os.vhdx", GiB),), require_encryption=True)
    share1 = Location(samba.url("share1"), identity=hosta.identity)  # not asked to encrypt
    best = choose(spec, [share1], [hosta])
    assert best.capacity.encrypted and best.location.encrypt  # it can, so it will be asked to
    fresh_sealed_pool()
    wait_for(lambda: encrypted_tcons(samba, "share1") == 0)
    placed = place(spec, share1)
    assert encrypted_tcons(samba, "share1") >= 1  # the server saw the files arrive encrypted
    assert (samba.share_path("share1") / "sec02" / "Virtual Hard Disks" / "os.vhdx").is_file()
    assert len(placed.files) == 2
