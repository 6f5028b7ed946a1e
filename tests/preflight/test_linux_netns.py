"""The Linux collector for real: hosts are network namespaces joined by veth pairs, broken one way
at a time (bridge names, MTUs, offloads, routes, idle links, encapsulation room); each rule is seen
failing, then passing once the fix the report printed has been run on the host it names."""

from __future__ import annotations

import pytest

from .models import netvirt_model
from .netns import Lab, of_rule


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path, "hosta", "hostb")
    try:
        lab.link("hosta", "va", "10.9.0.1/24", "hostb", "vb", "10.9.0.2/24")
        yield lab
    finally:
        lab.close()


def failing(results, rule, status="fail"):
    bad = [r for r in of_rule(results, rule) if r["status"] == status]
    assert bad, of_rule(results, rule)
    return bad


def passing(results, rule):
    assert {r["status"] for r in of_rule(results, rule)} == {"pass"}, of_rule(results, rule)


def test_bridge_names_must_match_in_case_too(lab):
    lab.run("hosta", "ip link add Public type bridge && ip link set dev Public up && ip link add Backup type bridge")
    lab.run("hostb", "ip link add PUBLIC type bridge && ip link set dev PUBLIC up")
    code, results = lab.preflight()
    assert code == 2
    bad = failing(results, 1)
    assert any("'Public'" in r["reason"] and "'PUBLIC'" in r["reason"] for r in bad)
    assert any("no switch named 'Backup'" in r["reason"] for r in bad)
    for r in bad:
        lab.apply(r)
    code, results = lab.preflight()
    passing(results, 1)


def test_mtus_must_agree_and_a_full_size_packet_must_pass(lab):
    lab.run("hostb", "ip link set dev vb mtu 9000")
    probes = {"hosta": ("--peer", "10.9.0.2"), "hostb": ("--peer", "10.9.0.1")}
    code, results = lab.preflight(collect=probes)
    bad = failing(results, 10)
    assert any("MTU 1500" in r["reason"] and "9000" in r["reason"] for r in bad)
    assert any("9000-byte don't-fragment ping from hostb to 10.9.0.1 failed" in r["reason"] for r in bad)
    lab.apply(next(r for r in bad if "has MTU" in r["reason"]))
    code, results = lab.preflight(collect=probes)
    passing(results, 10)
    assert "full-size don't-fragment ping passed" in of_rule(results, 10)[0]["reason"]
    assert code == 0


def test_a_smaller_mtu_on_the_path_is_found_by_the_probe(tmp_path):
    """Both ends at 9000, a switch between them at 1500: equal MTUs, yet jumbo frames die."""
    lab = Lab(tmp_path, "hosta", "hostb", "sw")
    try:
        lab.link("hosta", "va", "10.9.0.1/24", "sw", "sa", "")
        lab.link("hostb", "vb", "10.9.0.2/24", "sw", "sb", "")
        lab.run("sw", "ip link add br0 type bridge && ip link set sa master br0 && ip link set sb master br0 "
                      "&& ip link set br0 up")
        lab.run("hosta", "ip link set dev va mtu 9000")
        lab.run("hostb", "ip link set dev vb mtu 9000")
        probes = {"hosta": ("--peer", "10.9.0.2"), "hostb": ()}
        _, results = lab.preflight(collect=probes)
        bad = failing(results, 10)
        assert all("ping from hosta to 10.9.0.2 failed" in r["reason"] for r in bad), bad
        lab.run("sw", "ip link set dev sa mtu 9000 && ip link set dev sb mtu 9000 && ip link set dev br0 mtu 9000")
        _, results = lab.preflight(collect=probes)
        passing(results, 10)
    finally:
        lab.close()


def test_checksum_offloads_must_agree(lab):
    lab.run("hostb", "ethtool -K vb rx off")
    _, results = lab.preflight()
    bad = failing(results, 11)
    assert "rx" in bad[0]["reason"] and bad[0]["fix"] == "on hostb: ethtool -K vb rx on"
    lab.apply(bad[0])
    _, results = lab.preflight()
    passing(results, 11)


def test_connected_adapters_nobody_uses_are_reported(lab):
    lab.run("hosta", "ip link add x1 type veth peer name x2 && ip link set x1 up && ip link set x2 up")
    code, results = lab.preflight()
    warned = failing(results, 4, "warn")
    assert {r["reason"].split()[0] for r in warned} == {"x1", "x2"} and code == 0
    lab.apply(warned[0])  # one end down takes the other's carrier with it
    _, results = lab.preflight()
    passing(results, 4)


def test_the_largest_routable_network_comes_first(lab):
    lab.link("hosta", "vc", "10.8.0.1/30", "hostb", "vd", "10.8.0.2/30")
    lab.run("hosta", "ip route add default via 10.9.0.2 dev va metric 200 && "
                     "ip route add default via 10.8.0.2 dev vc metric 100")
    _, results = lab.preflight()
    warned = failing(results, 3, "warn")
    assert "vc (metric 100) comes before va (metric 200)" in warned[0]["reason"]
    lab.apply(warned[0])
    _, results = lab.preflight()
    passing(results, 3)


def test_room_for_the_encapsulation_of_a_netvirt_model(lab, tmp_path):
    model = netvirt_model(tmp_path / "model.json", {"hosta": "10.9.0.1", "hostb": "10.9.0.2"}, "vxlan")
    _, results = lab.preflight("--netvirt", str(model))
    bad = failing(results, 13)
    assert {r["hosts"] for r in bad} == {"hosta", "hostb"}
    assert "50 bytes of VXLAN" in bad[0]["reason"] and "lower the guests' MTU to 1450" in bad[0]["reason"]
    for r in bad:
        lab.apply(r)
    _, results = lab.preflight("--netvirt", str(model))
    passing(results, 13)
    passing(results, 10)  # both raised alike


def test_netbios_on_the_shared_network_warns(lab):
    """A NetBIOS name service (anything on UDP 137) in hosta's namespace: a warning until it stops.
    (The printed fix stops nmbd; here the listener is the test's own, so the test stops it.)"""
    import subprocess

    listener = subprocess.Popen(["ip", "netns", "exec", lab.ns["hosta"], "python3", "-c",
                                 "import socket, sys, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                                 "s.bind(('0.0.0.0', 137)); print('bound', flush=True); time.sleep(600)"],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None and listener.stdout.readline() == "bound\n"
        _, results = lab.preflight()
        warned = failing(results, 9, "warn")
        assert [r["hosts"] for r in warned] == ["hosta"] and "nmbd" in warned[0]["fix"]
    finally:
        listener.kill()
        listener.wait(30)
    _, results = lab.preflight()
    passing(results, 9)
