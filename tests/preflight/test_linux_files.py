"""What the Linux collector reads from /proc, on recorded files: bond modes (/proc/net/bonding,
as the kernel's bonding driver writes it: this machine's kernel has no bonding module, so no bond
can be made live here) and NetBIOS (UDP port 137 in /proc/net/udp, or an nmbd process); and the
rules over Linux bonds and NetBIOS."""

from __future__ import annotations

import json
from pathlib import Path

from vhdkit import preflight
from vhdkit.preflight.facts import Adapter, HostFacts, Team
from vhdkit.preflight.linux import _bond_mode, _netbios

BONDING = """Ethernet Channel Bonding Driver: v6.1.0

Bonding Mode: fault-tolerance (active-backup)
Primary Slave: None
Currently Active Slave: eth0
MII Status: up

Slave Interface: eth0
MII Status: up

Slave Interface: eth1
MII Status: up
"""

UDP = """   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  120: 00000000:0089 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1234 2 0 0
"""


def test_bond_mode_from_proc(tmp_path):
    (tmp_path / "net" / "bonding").mkdir(parents=True)
    (tmp_path / "net" / "bonding" / "bond0").write_text(BONDING)
    assert _bond_mode(tmp_path, "bond0", {}) == "fault-tolerance (active-backup)"
    assert _bond_mode(tmp_path, "bond1", {"info_data": {"mode": "802.3ad"}}) == "802.3ad"  # ip -d's word


def test_netbios_from_proc(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "udp").write_text(UDP.replace(":0089", ":0035"))
    assert _netbios(tmp_path) is False
    (tmp_path / "net" / "udp").write_text(UDP)
    assert _netbios(tmp_path) is True
    (tmp_path / "net" / "udp").write_text(UDP.replace(":0089", ":0035"))
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "comm").write_text("nmbd\n")
    assert _netbios(tmp_path) is True


def _linux(name: str, mode: str, mtu: int, netbios: bool = False) -> HostFacts:
    return HostFacts(host=name, kind="linux", netbios_running=netbios,
                     adapters=[Adapter("bond0", mtu=mtu, addresses=[f"10.5.0.{1 if name == 'a' else 2}/24"],
                                       driver="bond")],
                     teams=[Team("bond0", mode, ["eth0", "eth1"], mtu)])


def test_bond_modes_and_mtus_must_agree(tmp_path):
    a = _linux("a", "fault-tolerance (active-backup)", 9000)
    b = _linux("b", "IEEE 802.3ad Dynamic link aggregation", 1500)
    results = [r for r in preflight.run([a, b], only=[12])]
    assert {r.status for r in results} == {"fail"} and len(results) == 2
    assert results[0].fix == ("on b: ip link set dev bond0 down && ip link set dev bond0 type bond mode active-backup "
                              "&& ip link set dev bond0 up")
    assert results[1].fix == "on b: ip link set dev bond0 mtu 9000"
    b = _linux("b", "fault-tolerance (active-backup)", 9000)
    assert {r.status for r in preflight.run([a, b], only=[12])} == {"pass"}


def test_netbios_on_a_shared_network_warns(tmp_path):
    a, b = _linux("a", "x", 1500, netbios=True), _linux("b", "x", 1500)
    by_host = {r.hosts: r for r in preflight.run([a, b], only=[9])}
    assert by_host["a"].status == "warn" and "nmbd" in by_host["a"].fix and by_host["b"].status == "pass"
    # and the same facts survive the JSON round trip the files take
    again = preflight.load(_write(tmp_path / "a.json", a))
    assert again == a


def _write(path: Path, facts: HostFacts) -> Path:
    path.write_text(facts.to_json())
    json.loads(path.read_text())
    return path


def test_the_collector_lists_vhdkit_serve_endpoints(tmp_path):
    import vhdkit

    from ..copy.test_serve import Served
    from vhdkit.preflight.linux import collect

    image = tmp_path / "d.vhdx"
    vhdkit.create(image, size=1 << 24).close()
    served = Served(image, tmp_path)
    try:
        endpoints = collect(name="here").endpoints
    finally:
        served.stop()
    pid = served.proc.pid
    assert f"nbd unix:{served.nbd} (pid {pid})" in endpoints and f"control {served.control} (pid {pid})" in endpoints
