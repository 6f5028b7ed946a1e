"""Frames on the wire: NVGRE (RFC 7637) and VXLAN (RFC 7348) encapsulation and decapsulation,
the Ethernet/IP/ICMP pieces a test frame needs, and classic pcap files.

NVGRE: outer Ethernet, outer IP (protocol 47) between provider addresses, an 8-byte GRE header
(0x2000: key present, no checksum, no sequence, version 0; protocol 0x6558 Transparent Ethernet
Bridging; key = VSID << 8 | FlowID), then the customer's Ethernet frame without FCS or 802.1Q tag.
VXLAN: outer Ethernet, outer IP, UDP to port 4789 (the source port carries flow entropy), an 8-byte
header (flags 0x08 = I, VNI in bits 8-31 of the second word), then the customer's frame.
IPv4 outer headers carry a correct header checksum; VXLAN over IPv4 sends UDP checksum 0 (RFC 7348
§5 allows it), over IPv6 a real one (IPv6 UDP needs it).
"""

from __future__ import annotations

import ipaddress
import struct
import time
import zlib
from typing import BinaryIO, NamedTuple

from ..errors import FrameError
from .pools import VSID_MAX, VSID_MIN, IPAddress

ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_TEB = 0x0800, 0x86DD, 0x8100, 0x6558
PROTO_ICMP, PROTO_GRE, PROTO_UDP = 1, 47, 17
GRE_KEY_PRESENT = 0x2000  # K=1; C, S, reserved0 and version all 0 (RFC 7637 §3.2)
VXLAN_PORT = 4789
VXLAN_FLAG_I = 0x08
NVGRE_OVERHEAD_V4, VXLAN_OVERHEAD_V4 = 14 + 20 + 8, 14 + 20 + 8 + 8


def checksum(data: bytes, start: int = 0) -> int:
    """The Internet checksum (RFC 1071) of ``data``, plus a partial sum ``start``."""
    if len(data) % 2:
        data += b"\0"
    total = start + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _mac_bytes(mac: int) -> bytes:
    return mac.to_bytes(6, "big")


def ipv4_header(src: IPAddress, dst: IPAddress, protocol: int, payload_length: int, ttl: int = 64,
                ident: int = 0) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_length, ident, 0x4000, ttl, protocol, 0,
                         src.packed, dst.packed)  # DF set: an atomic datagram, so ident 0 is fine (RFC 6864)
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:]


def ipv6_header(src: IPAddress, dst: IPAddress, next_header: int, payload_length: int, hop_limit: int = 64) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, payload_length, next_header, hop_limit, src.packed, dst.packed)


def _pseudo_sum(src: IPAddress, dst: IPAddress, protocol: int, length: int) -> int:
    packed = src.packed + dst.packed
    return sum(struct.unpack(f"!{len(packed) // 2}H", packed)) + protocol + length


def icmp_echo(src_mac: int, dst_mac: int, src: IPAddress, dst: IPAddress, *, ident: int = 0x1234, seq: int = 1,
              payload: bytes = b"vhdkit netvirt", ttl: int = 64) -> bytes:
    """An Ethernet/IPv4/ICMP echo request with correct checksums (the customer's frame)."""
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return _mac_bytes(dst_mac) + _mac_bytes(src_mac) + struct.pack("!H", ETH_IPV4) + \
        ipv4_header(src, dst, PROTO_ICMP, len(body), ttl) + body


def flow_entropy(inner: bytes) -> int:
    """A hash of the inner frame's flow (MACs, addresses, protocol, ports): the same for every
    packet of a flow, so the underlay keeps a flow on one path (FlowID / UDP source port)."""
    if len(inner) >= 34 and inner[12:14] == b"\x08\x00":
        ihl = (inner[14] & 0x0F) * 4
        key = inner[:12] + inner[23:24] + inner[26:34]
        if inner[23] in (6, 17):
            key += inner[14 + ihl : 14 + ihl + 4]
    else:
        key = inner[:14]
    return zlib.crc32(key)


class Tunnel:
    """One direction between two provider addresses: the outer headers are built once, and each
    frame only gets its lengths and checksum filled in (the costly parts done in advance)."""

    def __init__(self, kind: str, src_pa: str | IPAddress, dst_pa: str | IPAddress, vsid: int, *,
                 src_mac: int = 0x020000000001, dst_mac: int = 0x020000000002, flow_id: int | None = None,
                 ttl: int = 64) -> None:
        if kind not in ("nvgre", "vxlan"):
            raise ValueError(f"unknown encapsulation {kind!r}")
        _check_vsid(vsid)
        if flow_id is not None and not 0 <= flow_id <= 0xFF:
            raise ValueError(f"FlowID {flow_id} does not fit 8 bits")
        self.kind, self.vsid, self.flow_id = kind, vsid, flow_id
        self.src, self.dst = ipaddress.ip_address(src_pa), ipaddress.ip_address(dst_pa)
        if self.src.version != self.dst.version:
            raise ValueError("provider addresses of two IP versions")
        self.v6 = self.src.version == 6
        self._eth = _mac_bytes(dst_mac) + _mac_bytes(src_mac) + struct.pack("!H", ETH_IPV6 if self.v6 else ETH_IPV4)
        self._ttl = ttl
        protocol = PROTO_GRE if kind == "nvgre" else PROTO_UDP
        self._protocol = protocol
        if not self.v6:  # the header's sum without its total length: added per frame
            fixed = ipv4_header(self.src, self.dst, protocol, 0, ttl)
            self._v4_sum = sum(struct.unpack("!10H", fixed[:10] + b"\0\0" + fixed[12:])) - 20
            self._v4_head = fixed[:2]
            self._v4_mid = fixed[4:10]
            self._v4_tail = fixed[12:]
        self._pseudo = _pseudo_sum(self.src, self.dst, PROTO_UDP, 0) if self.v6 else 0
        self._vxlan = struct.pack("!II", VXLAN_FLAG_I << 24, vsid << 8)
        self._gre_fixed = struct.pack("!HH", GRE_KEY_PRESENT, ETH_TEB)

    def encapsulate(self, inner: bytes) -> bytes:
        if self.kind == "nvgre":
            flow = self.flow_id if self.flow_id is not None else flow_entropy(inner) & 0xFF
            l4 = self._gre_fixed + struct.pack("!I", self.vsid << 8 | flow) + inner
        else:
            sport = 49152 | (flow_entropy(inner) & 0x3FFF)
            length = 16 + len(inner)
            if self.v6:
                head = struct.pack("!HHH", sport, VXLAN_PORT, length) + b"\0\0" + self._vxlan
                csum = checksum(head + inner, self._pseudo + length) or 0xFFFF
                l4 = head[:6] + struct.pack("!H", csum) + head[8:] + inner
            else:
                l4 = struct.pack("!HHHH", sport, VXLAN_PORT, length, 0) + self._vxlan + inner
        if self.v6:
            return self._eth + ipv6_header(self.src, self.dst, self._protocol, len(l4), self._ttl) + l4
        total = 20 + len(l4)
        s = self._v4_sum + total
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        return b"".join((self._eth, self._v4_head, struct.pack("!H", total), self._v4_mid,
                         struct.pack("!H", ~s & 0xFFFF), self._v4_tail, l4))


def _check_vsid(vsid: int) -> None:
    if not VSID_MIN <= vsid <= VSID_MAX:
        raise FrameError(f"VSID {vsid} is out of range ({VSID_MIN}-{VSID_MAX})")


class Decapsulated(NamedTuple):
    kind: str  # "nvgre" or "vxlan"
    vsid: int
    flow: int  # NVGRE FlowID, or the VXLAN UDP source port
    outer_src: IPAddress
    outer_dst: IPAddress
    inner: bytes


def decapsulate(frame: bytes) -> Decapsulated:
    """Parse an encapsulated frame, checking every rule a receiver must; FrameError says which failed."""
    if len(frame) < 14:
        raise FrameError(f"truncated frame: {len(frame)} bytes, shorter than an Ethernet header")
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    at = 14
    if ethertype == ETH_IPV4:
        if len(frame) < at + 20:
            raise FrameError("truncated outer IPv4 header")
        version_ihl, total, protocol = frame[at], struct.unpack_from("!H", frame, at + 2)[0], frame[at + 9]
        ihl = (version_ihl & 0x0F) * 4
        if version_ihl >> 4 != 4 or ihl < 20 or len(frame) < at + ihl:
            raise FrameError("malformed outer IPv4 header")
        if checksum(frame[at : at + ihl]) != 0:
            raise FrameError("outer IPv4 header checksum is wrong")
        if total < ihl or len(frame) < at + total:
            raise FrameError(f"truncated frame: the outer IPv4 header says {total} bytes, {len(frame) - at} follow")
        src, dst = ipaddress.IPv4Address(frame[at + 12 : at + 16]), ipaddress.IPv4Address(frame[at + 16 : at + 20])
        payload = frame[at + ihl : at + total]
    elif ethertype == ETH_IPV6:
        if len(frame) < at + 40:
            raise FrameError("truncated outer IPv6 header")
        length, protocol = struct.unpack_from("!HB", frame, at + 4)
        if len(frame) < at + 40 + length:
            raise FrameError(f"truncated frame: the outer IPv6 header says {length} bytes, {len(frame) - at - 40} follow")
        src, dst = ipaddress.IPv6Address(frame[at + 8 : at + 24]), ipaddress.IPv6Address(frame[at + 24 : at + 40])
        payload = frame[at + 40 : at + 40 + length]
    else:
        raise FrameError(f"outer EtherType {ethertype:#06x} is not IPv4 or IPv6")
    if protocol == PROTO_GRE:
        kind, vsid, flow, inner = _nvgre(payload)
    elif protocol == PROTO_UDP:
        kind, vsid, flow, inner = _vxlan(payload, src, dst)
    else:
        raise FrameError(f"outer IP protocol {protocol} is neither GRE (47) nor UDP (17)")
    if len(inner) < 14:
        raise FrameError("truncated inner Ethernet frame")
    if struct.unpack_from("!H", inner, 12)[0] == ETH_VLAN:
        raise FrameError("the inner frame carries an 802.1Q tag, which NVGRE and VXLAN forbid")
    return Decapsulated(kind, vsid, flow, src, dst, inner)


def _nvgre(payload: bytes) -> tuple[str, int, int, bytes]:
    if len(payload) < 8:
        raise FrameError("truncated GRE header")
    flags, protocol, key = struct.unpack_from("!HHI", payload)
    if flags != GRE_KEY_PRESENT:
        raise FrameError(f"GRE flags {flags:#06x}: NVGRE needs exactly the key bit (0x2000: C=S=0, version 0)")
    if protocol != ETH_TEB:
        raise FrameError(f"GRE protocol {protocol:#06x} is not Transparent Ethernet Bridging (0x6558)")
    _check_vsid(key >> 8)
    return "nvgre", key >> 8, key & 0xFF, payload[8:]


def _vxlan(payload: bytes, src: IPAddress, dst: IPAddress) -> tuple[str, int, int, bytes]:
    if len(payload) < 16:
        raise FrameError("truncated UDP/VXLAN header")
    sport, dport, length, csum, word0, word1 = struct.unpack_from("!HHHHII", payload)
    if dport != VXLAN_PORT:
        raise FrameError(f"UDP destination port {dport} is not VXLAN's {VXLAN_PORT}")
    if length < 16 or length > len(payload):
        raise FrameError(f"UDP length {length} does not match the {len(payload)} bytes present")
    if csum and checksum(payload[:length], _pseudo_sum(src, dst, PROTO_UDP, length)) != 0:
        raise FrameError("UDP checksum is wrong")
    if not (word0 >> 24) & VXLAN_FLAG_I:
        raise FrameError("VXLAN I flag is clear: the VNI is not valid")
    _check_vsid(word1 >> 8)
    return "vxlan", word1 >> 8, sport, payload[16:length]


class PcapWriter:
    """Classic libpcap files (magic 0xa1b2c3d4, version 2.4, link type 1 = Ethernet)."""

    def __init__(self, out: BinaryIO, snaplen: int = 65535) -> None:
        self._out = out
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))

    def write(self, frame: bytes, when: float | None = None) -> None:
        stamp = time.time() if when is None else when
        seconds = int(stamp)
        self._out.write(struct.pack("<IIII", seconds, int((stamp - seconds) * 1e6), len(frame), len(frame)))
        self._out.write(frame)


def read_pcap(data: bytes) -> list[bytes]:
    """The frames of a classic little-endian pcap file (what PcapWriter writes)."""
    if len(data) < 24 or struct.unpack_from("<I", data)[0] != 0xA1B2C3D4:
        raise FrameError("not a little-endian classic pcap file")
    frames, at = [], 24
    while at + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, at + 8)[0]
        if at + 16 + caplen > len(data):
            raise FrameError("truncated pcap record")
        frames.append(data[at + 16 : at + 16 + caplen])
        at += 16 + caplen
    return frames
