"""``vhdkit locations`` and ``vhdkit place`` with an inventory, against the tests' Samba."""

from __future__ import annotations

import json

from vhdkit.units import GiB

from ..test_cli import vhdkit_cmd


def inventory(samba, tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("HOSTA_PW", samba.password)
    cred = tmp_path / "hostb.cred"
    cred.write_text(f"username = hostb\npassword = {samba.other_users['hostb']}\n")
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({
        "hosts": [{"name": "hosta", "username": samba.user, "password_env": "HOSTA_PW", "local": True},
                  {"name": "hostb", "credentials_file": str(cred)}],
        "locations": [samba.url("share1"), samba.url("share2"), samba.url("small"), str(tmp_path)],
    }))
    return str(path)


def test_locations_lists_space_dialect_and_who_reaches(samba, tmp_path, monkeypatch):
    inv = inventory(samba, tmp_path, monkeypatch)
    samba.set_free("share2", 100 * GiB, 42 * GiB)
    try:
        r = vhdkit_cmd("locations", "--inventory", inv, "--json")
        text = vhdkit_cmd("locations", "--inventory", inv)
    finally:
        samba.clear_free("share2")
    assert r.returncode == 0, r.stderr
    rows = {row["location"]: row for row in json.loads(r.stdout)}
    share2 = rows[samba.url("share2")]
    assert (share2["total"], share2["free"], share2["dialect"]) == (100 * GiB, 42 * GiB, "3.1.1")
    assert share2["reach"] == {"hosta": "read-write", "hostb": "no"}
    assert rows[samba.url("share1")]["reach"] == {"hosta": "read-write", "hostb": "read-write"}
    assert rows[str(tmp_path)]["reach"] == {"hosta": "read-write", "hostb": "no"}
    for out in (r, text):
        assert samba.password not in out.stdout + out.stderr
        assert samba.other_users["hostb"] not in out.stdout + out.stderr


def test_place_dry_run_then_for_real(samba, tmp_path, monkeypatch):
    inv = inventory(samba, tmp_path, monkeypatch)
    spec = tmp_path / "vm.json"
    spec.write_text(json.dumps({"name": "cli01", "hosts": ["hosta"],
                                "disks": [{"name": "os.vhdx", "virtual_size": "16G"}]}))
    dry = vhdkit_cmd("place", str(spec), "--inventory", inv, "--hosts", "hosta,hostb", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    ratings = json.loads(dry.stdout)["ratings"]
    # share1 (most room) then small; share2 refuses hostb, the local folder is not shared with it
    assert [r["location"] for r in ratings if r["suitable"]] == [samba.url("share1"), samba.url("small")]
    assert not (samba.share_path("share1") / "cli01").exists()
    real = vhdkit_cmd("place", str(spec), "--inventory", inv, "--hosts", "hosta,hostb")
    assert real.returncode == 0, real.stderr
    assert (samba.share_path("share1") / "cli01" / "Virtual Hard Disks" / "os.vhdx").exists()
    assert "placed in" in real.stdout and samba.password not in real.stdout + real.stderr
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"name": "huge", "hosts": ["hosta"],
                                "disks": [{"name": "d.vhdx", "virtual_size": "60T", "type": "fixed"}]}))
    none = vhdkit_cmd("place", str(huge), "--inventory", inv)
    assert none.returncode == 1 and "no location suits VM huge" in none.stderr and "too small" in none.stderr
