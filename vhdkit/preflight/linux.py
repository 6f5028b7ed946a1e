"""Gather a Linux host's facts live, with the tools every host has: ``ip -j`` (iproute2) for
interfaces, addresses, routes, bridges and bonds, ``ethtool --json -k`` for offloads,
/proc/net/bonding for bond modes, /proc/cpuinfo, /proc/net/udp for NetBIOS, and ``ping -M do``
for a don't-fragment probe to each peer. No daemon, nothing installed on the host."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any, Sequence

from ..errors import PreflightError
from .facts import Adapter, HostFacts, Probe, Share, Switch, Team

_TIMEOUT = 20  # seconds for any one tool


def collect(*, name: str | None = None, peers: Sequence[str] = (), shares: Sequence[str] = (),
            proc: str = "/proc") -> HostFacts:
    """This machine's facts (``name``: how the report calls it, default its host name); a
    don't-fragment probe to each of ``peers`` at the MTU of the interface that reaches it; each
    of ``shares`` (smb:// URLs, credentials as vhdkit takes them) logged in to and measured."""
    links = _ip("-d", "link", "show")
    addrs = {entry["ifname"]: entry for entry in _ip("addr", "show")}
    routes = _ip("route", "show")
    facts = HostFacts(host=name or socket.gethostname(), kind="linux")
    _read_cpu(facts, Path(proc) / "cpuinfo")
    default_dev: dict[str, int] = {}  # interface -> the lowest metric of a default route through it
    gateways: dict[str, str] = {}
    for r in sorted((r for r in routes if r.get("dst") == "default"), key=lambda r: -r.get("metric", 0)):
        default_dev[r.get("dev", "")], gateways[r.get("dev", "")] = r.get("metric", 0), r.get("gateway", "")
    for link in links:
        ifname = link["ifname"]
        if ifname == "lo":
            continue
        info = link.get("linkinfo", {})
        kind, slave_kind = info.get("info_kind", ""), info.get("info_slave_kind", "")
        addresses = [f"{a['local']}/{a['prefixlen']}" for a in addrs.get(ifname, {}).get("addr_info", [])
                     if a.get("scope") != "link"]
        adapter = Adapter(
            name=ifname, mac=link.get("address", ""), mtu=link.get("mtu"),
            up="LOWER_UP" in link.get("flags", []) and link.get("operstate") != "DOWN",
            addresses=addresses, default_gateway=ifname in default_dev, gateway=gateways.get(ifname, ""),
            metric=default_dev.get(ifname),
            speed_mbps=_speed(ifname), checksum_offload=_offloads(ifname),
            switch=link.get("master") if slave_kind in ("bridge", "openvswitch") else None,
            team=link.get("master") if slave_kind in ("bond", "team") else None,
            driver=kind or "physical", virtual=kind in ("bridge", "bond", "team", "veth", "dummy", "openvswitch"))
        facts.adapters.append(adapter)
        if kind == "bridge":
            facts.switches.append(Switch(ifname, kind="bridge"))
        elif kind in ("bond", "team"):
            facts.teams.append(Team(ifname, _bond_mode(Path(proc), ifname, info), mtu=link.get("mtu")))
    for adapter in facts.adapters:
        for group in (facts.switches, facts.teams):
            owner = next((g for g in group if g.name in (adapter.switch, adapter.team)), None)
            if owner is not None:
                (owner.adapters if isinstance(owner, Switch) else owner.members).append(adapter.name)
    facts.switches += _ovs_bridges()
    facts.netbios_running = _netbios(Path(proc))
    facts.endpoints = _vhdkit_endpoints(Path(proc))
    facts.probes = [_probe(peer, facts) for peer in peers]
    facts.shares = [share_facts(url) for url in shares]
    return facts


def share_facts(url: str) -> Share:
    """Log in to the share ``url`` names (a path on it may follow) and say which dialect it speaks
    (and whether it seals the session)."""
    from urllib.parse import urlsplit

    from ..errors import VhdkitError
    from ..placement.locations import Location
    from ..storage import redact

    parts = urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}/{parts.path.strip('/').split('/')[0]}"
    try:
        capacity = Location(root).measure()
    except VhdkitError:
        return Share(redact(url), reachable=False)
    return Share(redact(url), reachable=True, dialect=capacity.dialect or "", encryption=capacity.encrypted)


def _ip(*args: str) -> list[dict[str, Any]]:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    try:
        done = subprocess.run([ip, "-j", *args], capture_output=True, text=True, timeout=_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PreflightError(f"cannot run ip (iproute2): {e}") from e
    if done.returncode != 0:
        raise PreflightError(f"ip -j {' '.join(args)} failed: {done.stderr.strip()}")
    try:
        out = json.loads(done.stdout or "[]")
    except ValueError as e:
        raise PreflightError(f"ip -j {' '.join(args)} printed no JSON: {e}") from e
    return [entry for entry in out if isinstance(entry, dict)]


def _read_cpu(facts: HostFacts, cpuinfo: Path) -> None:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return
    first = text.split("\n\n", 1)[0]
    for line in first.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "vendor_id":
            facts.cpu_vendor = value
        elif key == "model name":
            facts.cpu_model = value
        elif key == "flags":
            facts.cpu_flags = value.split()


def _speed(ifname: str) -> int | None:
    try:
        value = int(Path(f"/sys/class/net/{ifname}/speed").read_text())
    except (OSError, ValueError):
        return None
    return value if value > 0 else None


def _offloads(ifname: str) -> dict[str, bool]:
    """rx/tx checksumming and the segmentation offloads as ethtool reports them."""
    ethtool = shutil.which("ethtool") or "/usr/sbin/ethtool"
    if not os.path.exists(ethtool):
        return {}
    try:
        done = subprocess.run([ethtool, "--json", "-k", ifname], capture_output=True, text=True, timeout=_TIMEOUT)
        features = json.loads(done.stdout)[0] if done.returncode == 0 else {}
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return {}
    out = {}
    for name, key in (("rx", "rx-checksumming"), ("tx", "tx-checksumming"), ("tso", "tcp-segmentation-offload"),
                      ("gso", "generic-segmentation-offload"), ("gro", "generic-receive-offload")):
        value = features.get(key)
        if isinstance(value, dict) and isinstance(value.get("active"), bool):
            out[name] = value["active"]
    return out


def _bond_mode(proc: Path, ifname: str, info: dict[str, Any]) -> str:
    """The bond's mode: /proc/net/bonding says it in words; ip -d says it in short."""
    try:
        for line in (proc / "net" / "bonding" / ifname).read_text().splitlines():
            if line.startswith("Bonding Mode:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return str(info.get("info_data", {}).get("mode", "unknown"))


def _ovs_bridges() -> list[Switch]:
    vsctl = shutil.which("ovs-vsctl")
    if vsctl is None:
        return []
    try:
        done = subprocess.run([vsctl, "list-br"], capture_output=True, text=True, timeout=_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [Switch(name, kind="ovs") for name in done.stdout.split()] if done.returncode == 0 else []


def _netbios(proc: Path) -> bool:
    """NetBIOS name service: an nmbd process, or anything bound to UDP port 137."""
    for table in ("udp", "udp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 1 and fields[1].rsplit(":", 1)[-1] == "0089":
                return True
    try:
        for entry in os.scandir(proc):
            if entry.name.isdigit():
                try:
                    if Path(entry.path, "comm").read_text().strip() == "nmbd":
                        return True
                except OSError:
                    continue
    except OSError:
        pass
    return False


def _vhdkit_endpoints(proc: Path) -> list[str]:
    """The NBD exports and control sockets of the ``vhdkit serve`` processes running here."""
    found = []
    try:
        entries = [e for e in os.scandir(proc) if e.name.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        if "serve" not in words or not any("vhdkit" in w for w in words[:3]):
            continue
        for flag, label in (("--nbd", "nbd"), ("--control", "control")):
            if flag in words[:-1]:
                found.append(f"{label} {words[words.index(flag) + 1]} (pid {entry.name})")
    return sorted(found)[:64]


def _probe(peer: str, facts: HostFacts) -> Probe:
    """Ping ``peer`` once, don't-fragment, with an IP packet as large as the MTU of the interface
    the route to it leaves by: a path that cannot carry that size fails here, not mid-migration."""
    route = _ip("route", "get", peer)
    dev = route[0].get("dev") if route else None
    adapter = facts.adapter(dev) if dev else None
    mtu = adapter.mtu if adapter and adapter.mtu else 1500
    ping = shutil.which("ping") or "/usr/bin/ping"
    header = 48 if ":" in peer else 28  # IPv6 + ICMPv6, or IPv4 + ICMP headers
    try:
        done = subprocess.run([ping, "-M", "do", "-c", "1", "-W", "2", "-s", str(mtu - header), peer],
                              capture_output=True, text=True, timeout=_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PreflightError(f"cannot run ping: {e}") from e
    return Probe(peer=peer, size=mtu, ok=done.returncode == 0)
