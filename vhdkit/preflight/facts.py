"""What a host is, as far as a live migration cares: one normalized record for Linux and Hyper-V.

Both collectors end here: the Linux one reads the machine it runs on (preflight.linux), the
Hyper-V one reads what a PowerShell script printed there (preflight.hyperv). The rules
(preflight.rules) see only this. Written and read as JSON, schema ``vhdkit-preflight-host/1``
(specs/preflight.md); reading bounds every list and string, so a hostile file gets an error that
names the file and the field, never a traceback or an unbounded allocation.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import PreflightError

SCHEMA = "vhdkit-preflight-host/1"
MAX_FILE = 8 * 1024 * 1024  # a host's facts are a few KiB; anything this big is not facts
MAX_ITEMS = 4096  # adapters, VMs, shares, flags ... per list
MAX_TEXT = 1024
OFFLOADS = ("ipv4", "tcp_ipv4", "udp_ipv4", "tcp_ipv6", "udp_ipv6")  # Windows' five checksum offloads


@dataclass
class Adapter:
    """A network interface: physical, virtual switch port, team/bond, or bridge."""

    name: str
    mac: str = ""
    mtu: int | None = None
    up: bool = True  # connected (link up)
    addresses: list[str] = field(default_factory=list)  # "10.0.1.5/24"
    default_gateway: bool = False  # the default route leaves through it
    gateway: str = ""  # that route's next hop
    metric: int | None = None  # lower is preferred
    speed_mbps: int | None = None
    checksum_offload: dict[str, bool] = field(default_factory=dict)  # OFFLOADS (Hyper-V) or rx/tx (Linux)
    smb_client: bool | None = None  # ms_msclient binding (Hyper-V)
    smb_server: bool | None = None  # ms_server binding
    netbios: bool | None = None  # NetBIOS over TCP/IP enabled on it
    switch: str | None = None  # the virtual switch / bridge it is bound to
    team: str | None = None  # the team / bond it belongs to
    driver: str = ""
    driver_version: str = ""
    virtual: bool = False  # a host vNIC / veth / bridge itself, not a physical port

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        out = []
        for a in self.addresses:
            net = ipaddress.ip_interface(a).network
            if not net.is_link_local:
                out.append(net)
        return out


@dataclass
class Team:
    """An LBFO team (Hyper-V) or a bond (Linux)."""

    name: str
    mode: str
    members: list[str] = field(default_factory=list)
    mtu: int | None = None


@dataclass
class Switch:
    """A Hyper-V virtual switch or a Linux bridge (or OVS bridge)."""

    name: str
    adapters: list[str] = field(default_factory=list)  # the physical adapters (uplinks) it uses
    kind: str = ""  # External/Internal/Private, or bridge/ovs


@dataclass
class VmNic:
    switch: str | None
    mac: str = ""
    vlan: int | None = None


@dataclass
class Vm:
    name: str
    nics: list[VmNic] = field(default_factory=list)
    processor_compatibility: bool = False
    files: list[str] = field(default_factory=list)  # configuration, disks, checkpoints (paths/URLs)


@dataclass
class ClusterNetwork:
    name: str
    address: str  # "10.0.2.0/24"
    role: int  # 0 none, 1 cluster only, 3 cluster and client (Get-ClusterNetwork's Role)
    metric: int | None = None
    excluded_from_migration: bool = False


@dataclass
class Share:
    """An SMB share as this host reaches it."""

    url: str
    reachable: bool
    dialect: str = ""  # "3.1.1", "3.0.2", "2.1" ...
    signing: bool | None = None
    encryption: bool | None = None
    continuously_available: bool | None = None  # a scale-out / clustered share


@dataclass
class Probe:
    """A don't-fragment ping from this host to ``peer`` with packets of ``size`` bytes (IP)."""

    peer: str
    size: int
    ok: bool


@dataclass
class HostFacts:
    host: str
    kind: str  # "linux" or "hyperv"
    cpu_vendor: str = ""
    cpu_model: str = ""
    cpu_flags: list[str] = field(default_factory=list)
    adapters: list[Adapter] = field(default_factory=list)
    teams: list[Team] = field(default_factory=list)
    switches: list[Switch] = field(default_factory=list)
    vms: list[Vm] = field(default_factory=list)
    cluster_networks: list[ClusterNetwork] = field(default_factory=list)
    csv: bool = False  # Cluster Shared Volumes in use
    migration_enabled: bool | None = None
    migration_authentication: str = ""  # "CredSSP" or "Kerberos"
    migration_networks: list[str] = field(default_factory=list)  # in priority order
    lm_compatibility_level: int | None = None
    restrict_sending_ntlm: int | None = None  # 0 allow all, 1 audit, 2 deny all
    restrict_receiving_ntlm: int | None = None  # 0 allow all, 1 deny domain accounts, 2 deny all
    netbios_running: bool | None = None  # Linux: nmbd, or UDP 137 bound
    teaming_software: dict[str, str] = field(default_factory=dict)  # name -> version
    shares: list[Share] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)  # vhdkit serve's exports and control sockets here
    vmbus_receive_buffer: int | None = None  # bytes (ReceiveBufferSize of the synthetic NIC)
    vmbus_send_buffer: int | None = None

    def adapter(self, name: str) -> Adapter | None:
        return next((a for a in self.adapters if a.name == name), None)

    def to_json(self) -> str:
        return json.dumps({"schema": SCHEMA, **asdict(self)}, indent=2, sort_keys=False)


# -- reading ---------------------------------------------------------------------------------------

_RECORDS: dict[str, type] = {"adapters": Adapter, "teams": Team, "switches": Switch, "vms": Vm,
                             "cluster_networks": ClusterNetwork, "shares": Share, "probes": Probe, "nics": VmNic}


def from_dict(doc: Any, name: str) -> HostFacts:
    if not isinstance(doc, dict):
        raise PreflightError(f"{name}: expected a JSON object of host facts, found {type(doc).__name__}")
    if doc.get("schema") != SCHEMA:
        raise PreflightError(f"{name}: schema is {doc.get('schema')!r}, expected {SCHEMA!r} "
                             "(vhdkit preflight collect writes it)")
    body = {k: v for k, v in doc.items() if k != "schema"}
    facts = _record(HostFacts, body, name, "")
    if facts.kind not in ("linux", "hyperv"):
        raise PreflightError(f"{name}: kind must be 'linux' or 'hyperv', not {facts.kind!r}")
    return facts


def _record(cls: type, value: Any, name: str, where: str) -> Any:
    if not isinstance(value, dict):
        raise PreflightError(f"{name}: {where or 'the file'} must be an object, not {type(value).__name__}")
    known = cls.__dataclass_fields__
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise PreflightError(f"{name}: {where + '.' if where else ''}{unknown[0]} is not a field of {cls.__name__}")
    kwargs = {}
    for key, spec in known.items():
        if key not in value:
            continue
        kwargs[key] = _field(spec.type, value[key], name, f"{where}.{key}" if where else key, key)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field missing
        raise PreflightError(f"{name}: {where or 'the file'}: {e}") from e


def _field(kind: Any, value: Any, name: str, where: str, key: str) -> Any:
    kind = str(kind)
    if value is None and "None" in kind:
        return None
    if kind.startswith("list["):
        if not isinstance(value, list):
            raise PreflightError(f"{name}: {where} must be a list, not {type(value).__name__}")
        if len(value) > MAX_ITEMS:
            raise PreflightError(f"{name}: {where} has {len(value)} items (at most {MAX_ITEMS})")
        inner = kind[5:-1]
        if inner in {c.__name__ for c in _RECORDS.values()}:
            cls = next(c for c in _RECORDS.values() if c.__name__ == inner)
            return [_record(cls, item, name, f"{where}[{i}]") for i, item in enumerate(value)]
        return [_scalar("str", item, name, f"{where}[{i}]") for i, item in enumerate(value)]
    if kind.startswith("dict["):
        if not isinstance(value, dict) or len(value) > MAX_ITEMS:
            raise PreflightError(f"{name}: {where} must be an object of at most {MAX_ITEMS} entries")
        inner = kind.split(",")[1].strip(" ]")
        return {_scalar("str", k, name, where): _scalar(inner, v, name, f"{where}.{k}") for k, v in value.items()}
    return _scalar(kind.split(" |")[0], value, name, where)


def _scalar(kind: str, value: Any, name: str, where: str) -> Any:
    ok = {"str": isinstance(value, str), "int": isinstance(value, int) and not isinstance(value, bool),
          "bool": isinstance(value, bool)}.get(kind)
    if ok is None:
        raise PreflightError(f"{name}: {where}: unsupported field type {kind}")
    if not ok:
        raise PreflightError(f"{name}: {where} must be {_NAMES[kind]}, not {json.dumps(value)[:60]}")
    if kind == "str" and len(value) > MAX_TEXT:
        raise PreflightError(f"{name}: {where} is longer than {MAX_TEXT} characters")
    if kind == "int" and not -(2**63) <= value < 2**63:
        raise PreflightError(f"{name}: {where} is out of range")
    return value


_NAMES = {"str": "a string", "int": "a whole number", "bool": "true or false"}
