"""``vhdkit locations`` and ``vhdkit place`` with an inventory, against the tests' Samba."""

from __future__ import annotations

import json

from vhdkit.units import GiB

from ..test_cli import vhdkit_cmd


def inventory(samba, tmp_path, monkeypatch, more=()) -> str:
    monkeypatch.setenv("HOSTA_PW", samba.password)
    cred = tmp_path / "hostb.cred"
    cred.write_text(f"username = hostb\npassword = {samba.other_users['hostb']}\n")
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({
        "hosts": [{"name": "hosta", "username": samba.user, "password_env": "HOSTA_PW", "local": True},
                  {"name": "hostb", "credentials_file": str(cred)}],
        "locations": [samba.url("share1"), samba.url("share2"), samba.url("small"), str(tmp_path), *more],
    }))
    return str(path)


def test_locations_lists_space_dialect_and_who_reaches(samba, tmp_path, monkeypatch):
    # the share the server seals, and share1 once more, asked to encrypt
    inv = inventory(samba, tmp_path, monkeypatch, more=(samba.url("secure"),
                                                        {"where": samba.url("share1", "sealed"), "encrypt": True}))
    (samba.share_path("share1") / "sealed").mkdir(exist_ok=True)
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
    urls = (samba.url("share1"), samba.url("secure"), samba.url("share1", "sealed"))
    assert [rows[u]["encrypted"] for u in urls] == [False, True, True]
    assert "encrypted" in [line for line in text.stdout.splitlines() if "/secure" in line][0]
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


def test_the_environment_can_require_encryption_for_every_command(samba, tmp_path, monkeypatch):
    from .test_locations import second_server

    monkeypatch.setenv("VHDKIT_SMB_ENCRYPT", "1")
    monkeypatch.setenv("VHDKIT_SMB_PASSWORD", samba.password)
    url = samba.url("share1", f"env-{tmp_path.name[-8:]}.vhdx")
    made = vhdkit_cmd("create", url, "--size", "1G")
    assert made.returncode == 0, made.stderr
    with second_server(samba) as (second, ident):  # one that offers no encryption
        monkeypatch.setenv("VHDKIT_SMB_PASSWORD", second.password)
        refused = vhdkit_cmd("create", second.url("vms", "x.vhdx"), "--size", "1G")
        assert refused.returncode != 0 and "does not offer SMB 3 encryption" in refused.stderr
        assert list(second.share_path("vms").iterdir()) == [] and second.password not in refused.stderr
