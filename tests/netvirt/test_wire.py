"""NVGRE and VXLAN frames: tshark (Wireshark's dissectors) decodes what vhdkit writes exactly as
modelled, with every checksum correct; decapsulation round-trips and rejects what breaks the rules."""

from __future__ import annotations

import ipaddress
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vhdkit import netvirt
from vhdkit.errors import FrameError
from vhdkit.netvirt.wire import Tunnel, checksum, decapsulate, icmp_echo

from ..conftest import run
from ..test_cli import vhdkit_cmd
from .conftest import MODEL

FIELDS = ["frame.number", "gre.proto", "gre.flags.key", "gre.key", "vxlan.flag_i", "vxlan.vni", "udp.dstport",
          "ip.src", "ip.dst", "ip.checksum.status", "icmp.checksum.status", "ipv6.src", "ipv6.dst",
          "udp.checksum.status"]


def tshark(pcap) -> list[dict[str, str]]:
    args = ["tshark", "-r", pcap, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-T", "fields",
            "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for field in FIELDS:
        args += ["-e", field]
    out = run(*args).stdout
    return [dict(zip(FIELDS, line.split("\t"))) for line in out.splitlines()]


def test_tshark_decodes_the_models_frames_as_modelled(tmp_path, fabric):
    pcap = tmp_path / "hnv.pcap"
    made = vhdkit_cmd("netvirt", "pcap", str(MODEL), str(pcap), "--json")
    assert made.returncode == 0, made.stderr
    listing = json.loads(made.stdout)["frames"]
    decoded = tshark(pcap)
    assert len(decoded) == len(listing) >= 10
    kinds = set()
    for frame, sent in zip(decoded, listing):
        source, target = fabric.find_nic(sent["source"]), fabric.find_nic(sent["destination"])
        where = f"frame {frame['frame.number']}: {sent['source']} -> {sent['destination']}"
        assert frame["ip.src"] == f"{source.host.pa},{source.ca}", where  # outer PA, then inner CA
        assert frame["ip.dst"] == f"{target.host.pa},{target.ca}", where
        assert frame["ip.checksum.status"] == "1,1" and frame["icmp.checksum.status"] == "1", where
        vsid = target.subnet.vsid  # the receiver's VSID, also when routed
        if source.subnet.network.encapsulation == "nvgre":
            kinds.add("nvgre")
            assert (frame["gre.proto"], frame["gre.flags.key"]) == ("0x6558", "1"), where
            key = int(frame["gre.key"], 16)
            assert key >> 8 == vsid, where
            assert key & 0xFF == _flow_id_sent(pcap, int(frame["frame.number"])), where
            assert frame["vxlan.vni"] == "", where
        else:
            kinds.add("vxlan")
            assert (frame["vxlan.flag_i"], frame["vxlan.vni"], frame["udp.dstport"]) in (
                ("1", str(vsid), "4789"), ("True", str(vsid), "4789")), where
            assert frame["gre.proto"] == "", where
    assert kinds == {"nvgre", "vxlan"}
    expert = run("tshark", "-r", pcap, "-o", "ip.check_checksum:TRUE", "-q", "-z", "expert").stdout
    assert "Error" not in expert and "Warning" not in expert and "Malformed" not in expert, expert


def _flow_id_sent(pcap, number: int) -> int:
    frames = netvirt.read_pcap(pcap.read_bytes())
    return frames[number - 1][14 + 20 + 7]  # last byte of the GRE key


def test_ipv6_provider_addresses_carry_a_correct_udp_checksum(tmp_path):
    inner = icmp_echo(0x00155D000001, 0x00155D000002, ipaddress.ip_address("10.0.0.5"),
                      ipaddress.ip_address("10.0.0.7"))
    pcap = tmp_path / "v6.pcap"
    with open(pcap, "wb") as f:
        writer = netvirt.PcapWriter(f)
        writer.write(Tunnel("vxlan", "2001:db8::10", "2001:db8::20", 7001).encapsulate(inner), when=1.0)
        writer.write(Tunnel("nvgre", "2001:db8::10", "2001:db8::20", 7002, flow_id=9).encapsulate(inner), when=2.0)
    vx, gre = tshark(pcap)
    assert (vx["ipv6.src"], vx["ipv6.dst"], vx["vxlan.vni"], vx["udp.checksum.status"]) == (
        "2001:db8::10", "2001:db8::20", "7001", "1")
    assert int(gre["gre.key"], 16) == 7002 << 8 | 9 and gre["ip.src"] == "10.0.0.5"


def test_nvgre_and_vxlan_headers_byte_for_byte():
    inner = bytes(range(60))
    nvgre = Tunnel("nvgre", "192.0.2.10", "192.0.2.20", 5001, flow_id=0x2A).encapsulate(inner)
    assert nvgre[12:14] == b"\x08\x00" and nvgre[14 + 9] == 47
    assert nvgre[34:42] == bytes.fromhex("2000 6558 0013892a") and nvgre[42:] == inner
    assert struct.unpack_from("!H", nvgre, 16)[0] == 20 + 8 + 60 and checksum(nvgre[14:34]) == 0
    vxlan = Tunnel("vxlan", "192.0.2.10", "192.0.2.20", 6001).encapsulate(inner)
    sport, dport, length, csum = struct.unpack_from("!HHHH", vxlan, 34)
    assert (dport, length, csum) == (4789, 8 + 8 + 60, 0) and 49152 <= sport <= 65535
    assert vxlan[42:50] == bytes.fromhex("08000000 00177100") and vxlan[50:] == inner
    # the source port is flow entropy: the same for a payload change, another for another address
    t = Tunnel("vxlan", "192.0.2.10", "192.0.2.20", 6001)
    inner_v4 = inner[:12] + b"\x08\x00" + inner[14:]
    ports = {struct.unpack_from("!H", t.encapsulate(x), 34)[0] for x in (inner_v4, inner_v4[:59] + b"\xff")}
    assert len(ports) == 1
    assert struct.unpack_from("!H", t.encapsulate(inner_v4[:30] + b"\x99" + inner_v4[31:]), 34)[0] not in ports


addresses = st.one_of(
    st.tuples(st.ip_addresses(v=4), st.ip_addresses(v=4)),
    st.tuples(st.ip_addresses(v=6), st.ip_addresses(v=6)),
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["nvgre", "vxlan"]), pas=addresses, vsid=st.integers(netvirt.VSID_MIN, netvirt.VSID_MAX),
       flow=st.integers(0, 255), inner=st.binary(min_size=14, max_size=1600))
def test_decapsulate_undoes_encapsulate(kind, pas, vsid, flow, inner):
    if inner[12:14] == b"\x81\x00":
        inner = inner[:12] + b"\x08\x00" + inner[14:]
    frame = Tunnel(kind, pas[0], pas[1], vsid, flow_id=flow).encapsulate(inner)
    got = decapsulate(frame)
    assert (got.kind, got.vsid, got.outer_src, got.outer_dst, got.inner) == (kind, vsid, pas[0], pas[1], inner)
    if kind == "nvgre":
        assert got.flow == flow


def _frame(kind="nvgre"):
    inner = icmp_echo(1, 2, ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.2"))
    return bytearray(Tunnel(kind, "192.0.2.1", "192.0.2.2", 5001, flow_id=1).encapsulate(inner))


def _set(frame, at, data, fix_ip=False):
    frame[at : at + len(data)] = data
    if fix_ip:
        frame[24:26] = b"\0\0"
        frame[24:26] = struct.pack("!H", checksum(bytes(frame[14:34])))
    return frame


@pytest.mark.parametrize("frame, message", [
    (lambda: _set(_frame(), 34, b"\xa0\x00"), "GRE flags 0xa000"),  # C bit set
    (lambda: _set(_frame(), 34, b"\x30\x00"), "GRE flags 0x3000"),  # S bit set
    (lambda: _set(_frame(), 36, b"\x08\x00"), "not Transparent Ethernet Bridging"),
    (lambda: _set(_frame(), 38, b"\x00\x00\x10\x01"), "VSID 16 is out of range"),
    (lambda: _set(_frame(), 38, b"\xff\xff\xff\x01"), "VSID 16777215 is out of range"),
    (lambda: _frame()[:40], "truncated"),
    (lambda: _frame()[:20], "truncated outer IPv4"),
    (lambda: _frame()[:10], "truncated frame"),
    (lambda: _set(_frame(), 23, b"\x06", fix_ip=True), "neither GRE"),
    (lambda: _set(_frame(), 30, b"\x01"), "checksum is wrong"),
    (lambda: _set(_frame(), 12, b"\x08\x06"), "not IPv4 or IPv6"),
    (lambda: _set(_frame(), 42 + 12, b"\x81\x00"), "802.1Q"),
    (lambda: _set(_frame("vxlan"), 42, b"\x00"), "I flag is clear"),
    (lambda: _set(_frame("vxlan"), 36, b"\x12\xb6"), "not VXLAN's 4789"),
    (lambda: _set(_frame("vxlan"), 40, b"\x12\x34"), "UDP checksum is wrong"),
    (lambda: _set(_frame("vxlan"), 46, b"\x00\x00\x01\x00"), "VSID 1 is out of range"),
])
def test_frames_that_break_the_rules_are_refused_with_the_reason(frame, message):
    with pytest.raises(FrameError, match=message):
        decapsulate(bytes(frame()))


def test_a_tunnel_refuses_an_out_of_range_vsid_or_flow():
    with pytest.raises(FrameError, match="out of range"):
        Tunnel("nvgre", "192.0.2.1", "192.0.2.2", 4095)
    with pytest.raises(ValueError, match="8 bits"):
        Tunnel("nvgre", "192.0.2.1", "192.0.2.2", 5001, flow_id=256)
