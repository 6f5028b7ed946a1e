"""The checklist that explains failed live migrations, as rules over host facts (specs/preflight.md).

Each rule looks at the source host (the first) and each destination, and says pass, warn or fail
for each host or host pair, with the reason in one sentence and the command that fixes it on the
host it names (PowerShell on Hyper-V hosts, a shell command on Linux hosts).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from .facts import OFFLOADS, Adapter, HostFacts

PASS, WARN, FAIL = "pass", "warn", "fail"
TRANSFER_TYPES = ("live", "live-vsm", "live-storage")
ENCAPSULATION_OVERHEAD = {"nvgre": 42, "vxlan": 50}  # outer Ethernet 14 + IPv4 20 + GRE 8 / UDP 8 + VXLAN 8
VMBUS_STEPS_MB = (1, 2, 4)  # netvsc buffer sizes the platform takes; 4 MB is the useful maximum
HP_NCU_FIXED = (9, 35)  # HP Network Configuration Utility teams below 9.35 break Hyper-V networking


@dataclass
class Result:
    rule: int
    title: str
    status: str  # PASS, WARN, FAIL
    hosts: str  # "host" or "source -> destination"
    reason: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "title": self.title, "status": self.status, "hosts": self.hosts,
                "reason": self.reason, "fix": self.fix}


@dataclass
class Context:
    hosts: list[HostFacts]
    vm: str | None = None
    transfer: str | None = None
    target: str | None = None  # where Live Storage / Live VSM put the files
    netvirt: Any = None  # a netvirt Fabric
    rate: int | None = None  # packets per second the synthetic NIC must take

    @property
    def source(self) -> HostFacts:
        return self.hosts[0]

    @property
    def destinations(self) -> list[HostFacts]:
        return self.hosts[1:]

    def vms(self, host: HostFacts) -> list[Any]:
        return [v for v in host.vms if self.vm is None or v.name.lower() == self.vm.lower()]


def _pair(a: HostFacts, b: HostFacts) -> str:
    return f"{a.host} -> {b.host}"


def _fix(host: HostFacts, *, linux: str, hyperv: str) -> str:
    return f"on {host.host}: " + (linux if host.kind == "linux" else hyperv)


# -- 1. switch names --------------------------------------------------------------------------------

def switch_names(ctx: Context) -> Iterator[Result]:
    src = ctx.source
    vms = ctx.vms(src)
    needed = sorted({n.switch for v in vms for n in v.nics if n.switch}) if vms else sorted(s.name for s in src.switches)
    for dst in ctx.destinations:
        names = {s.name for s in dst.switches}
        bad = False
        for name in needed:
            if name in names:
                continue
            bad = True
            other = next((n for n in names if n.casefold() == name.casefold()), None)
            if other is not None:
                yield Result(1, "switch names", FAIL, _pair(src, dst),
                             f"{src.host} uses switch '{name}', {dst.host} calls it '{other}': names must match "
                             "exactly, case included",
                             _fix(dst, linux=f"ip link set dev {other} down && ip link set dev {other} name {name} "
                                             f"&& ip link set dev {name} up",
                                  hyperv=f'Rename-VMSwitch -Name "{other}" -NewName "{name}"'))
            else:
                yield Result(1, "switch names", FAIL, _pair(src, dst), f"{dst.host} has no switch named '{name}'",
                             _fix(dst, linux=f"ip link add {name} type bridge && ip link set dev {name} up",
                                  hyperv=f'New-VMSwitch -Name "{name}" -NetAdapterName "<uplink>"'))
        if not bad:
            what = ", ".join(f"'{n}'" for n in needed) or "no switch"
            yield Result(1, "switch names", PASS, _pair(src, dst), f"{what} on both, spelled alike")


# -- 2. processors ----------------------------------------------------------------------------------

def processors(ctx: Context) -> Iterator[Result]:
    src = ctx.source
    vms = ctx.vms(src)
    compatible = bool(vms) and all(v.processor_compatibility for v in vms)
    for dst in ctx.destinations:
        pair = _pair(src, dst)
        if src.cpu_vendor and dst.cpu_vendor and src.cpu_vendor != dst.cpu_vendor:
            yield Result(2, "processors", FAIL, pair, f"{src.cpu_vendor} on {src.host}, {dst.cpu_vendor} on "
                         f"{dst.host}: a running VM cannot move between processor vendors",
                         f"choose a destination with a {src.cpu_vendor} processor")
            continue
        missing = sorted(set(src.cpu_flags) - set(dst.cpu_flags)) if src.cpu_flags and dst.cpu_flags else []
        differs = missing or (not src.cpu_flags and src.cpu_model != dst.cpu_model)
        if not differs:
            yield Result(2, "processors", PASS, pair, "same vendor, and the destination offers every feature")
        elif compatible:
            yield Result(2, "processors", PASS, pair, "processors differ, but processor compatibility mode is on")
        else:
            what = (f"{dst.host} lacks {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}" if missing
                    else f"models differ ({src.cpu_model} / {dst.cpu_model})")
            names = ", ".join(v.name for v in vms) or "<vm>"
            yield Result(2, "processors", FAIL if missing else WARN, pair,
                         f"{what}, and processor compatibility mode is off",
                         _fix(src, linux=f"start the VM with a CPU model both hosts offer (qemu -cpu, libvirt "
                                         f"host-model off): {names}",
                              hyperv=f"Stop-VM -Name {names}; Set-VMProcessor -VMName {names} "
                                     "-CompatibilityForMigrationEnabled $true"))


# -- 3. binding / metric order ----------------------------------------------------------------------

def metric_order(ctx: Context) -> Iterator[Result]:
    for host in ctx.hosts:
        ranked = [a for a in host.adapters if a.up and a.networks() and a.metric is not None]
        routable = [a for a in ranked if a.default_gateway]
        if not routable:
            yield Result(3, "metric order", PASS, host.host, "no routable network with a metric to order")
            continue
        largest = max(routable, key=lambda a: max(n.num_addresses for n in a.networks()))
        before = [a for a in ranked if a is not largest and a.metric is not None and largest.metric is not None
                  and a.metric < largest.metric]
        if not before:
            yield Result(3, "metric order", PASS, host.host, f"{largest.name}, the largest routable network, comes first")
            continue
        lowest = min(a.metric for a in before if a.metric is not None)
        yield Result(3, "metric order", WARN, host.host,
                     f"{before[0].name} (metric {before[0].metric}) comes before {largest.name} (metric "
                     f"{largest.metric}), the largest routable network",
                     _fix(host, linux=f"ip route replace default via {largest.gateway or '<gateway>'} dev "
                                      f"{largest.name} metric {max(lowest - 1, 0)}",
                          hyperv=f'Set-NetIPInterface -InterfaceAlias "{largest.name}" -InterfaceMetric '
                                 f"{max(lowest - 1, 1)}"))


# -- 4. unused connected adapters -------------------------------------------------------------------

def unused_adapters(ctx: Context) -> Iterator[Result]:
    for host in ctx.hosts:
        unused = [a for a in host.adapters if a.up and not a.networks() and not a.switch and not a.team
                  and a.driver not in ("bridge", "bond", "team", "openvswitch") and not _carries(host, a)]
        if not unused:
            yield Result(4, "unused adapters", PASS, host.host, "every connected adapter is used")
        for a in unused:
            yield Result(4, "unused adapters", WARN, host.host,
                         f"{a.name} is connected but neither the host nor a VM uses it",
                         _fix(host, linux=f"ip link set dev {a.name} down",
                              hyperv=f'Disable-NetAdapter -Name "{a.name}" -Confirm:$false'))


def _carries(host: HostFacts, adapter: Adapter) -> bool:
    """It is the uplink of a switch or a member of a team (recorded on that side)."""
    return any(adapter.name in s.adapters for s in host.switches) or any(adapter.name in t.members for t in host.teams)


# -- 5. SMB bindings on cluster NICs ----------------------------------------------------------------

def smb_bindings(ctx: Context) -> Iterator[Result]:
    for host in ctx.hosts:
        if host.kind != "hyperv":
            yield Result(5, "SMB bindings", PASS, host.host, "not a Windows host: no client/server bindings")
            continue
        nics = _cluster_nics(host)
        bad = [(a, c) for a in nics for c, on in (("ms_msclient", a.smb_client), ("ms_server", a.smb_server))
               if on is False]
        for a, component in bad:
            yield Result(5, "SMB bindings", FAIL, host.host,
                         f"{component} is unbound on cluster NIC {a.name}: CSV and SMB storage need it",
                         _fix(host, linux="", hyperv=f'Enable-NetAdapterBinding -Name "{a.name}" -ComponentID {component}'))
        if not bad:
            yield Result(5, "SMB bindings", PASS, host.host,
                         f"client and server bound on {len(nics)} cluster NIC(s)" if nics else "no cluster NIC")


def _cluster_nics(host: HostFacts) -> list[Adapter]:
    nets = [ipaddress.ip_network(n.address, strict=False) for n in host.cluster_networks if n.role]
    if not nets:
        return [a for a in host.adapters if a.networks() and not a.virtual]
    return [a for a in host.adapters if any(n in nets for n in a.networks())]


# -- 6. CSV: one non-routed network ---------------------------------------------------------------

def csv_network(ctx: Context) -> Iterator[Result]:
    if not any(h.csv for h in ctx.hosts):
        yield Result(6, "CSV network", PASS, ", ".join(h.host for h in ctx.hosts), "no Cluster Shared Volumes")
        return
    shared = _common_networks(ctx.hosts, routed=False)
    names = ", ".join(h.host for h in ctx.hosts)
    if shared:
        yield Result(6, "CSV network", PASS, names, f"every node is on {shared[0]}, which has no gateway")
    else:
        yield Result(6, "CSV network", FAIL, names, "the nodes share no network without a default gateway: CSV "
                     "redirected I/O and heartbeats need one",
                     "on each node: New-NetIPAddress -InterfaceAlias \"<CSV NIC>\" -IPAddress 10.x.y.n -PrefixLength 24 "
                     "(no -DefaultGateway)")


def _common_networks(hosts: Sequence[HostFacts], routed: bool | None = None) -> list[Any]:
    sets = []
    for h in hosts:
        nets = set()
        for a in h.adapters:
            if routed is False and a.default_gateway:
                continue
            nets.update(a.networks())
        sets.append(nets)
    common = set.intersection(*sets) if sets else set()
    return sorted(common, key=str)


# -- 7. NTLM -----------------------------------------------------------------------------------------

def ntlm(ctx: Context) -> Iterator[Result]:
    for host in ctx.hosts:
        if host.kind != "hyperv":
            yield Result(7, "NTLM", PASS, host.host, "not a Windows host")
            continue
        if host.migration_authentication.lower() == "kerberos":
            yield Result(7, "NTLM", PASS, host.host, "migration authenticates with Kerberos")
            continue
        denied = [what for what, value in (("sending", host.restrict_sending_ntlm),
                                           ("receiving", host.restrict_receiving_ntlm)) if value == 2]
        if denied:
            yield Result(7, "NTLM", FAIL, host.host,
                         f"policy denies NTLM ({' and '.join(denied)}) while migration uses CredSSP, which needs it",
                         _fix(host, linux="", hyperv="Set-VMHost -VirtualMachineMigrationAuthenticationType Kerberos "
                              "(with constrained delegation), or Set-ItemProperty "
                              "HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Lsa\\MSV1_0 -Name "
                              f"Restrict{'Sending' if 'sending' in denied else 'Receiving'}NTLMTraffic -Value 0"))
        else:
            yield Result(7, "NTLM", PASS, host.host, "NTLM is not restricted")


# -- 8. live-migration network order ----------------------------------------------------------------

def migration_order(ctx: Context) -> Iterator[Result]:
    windows = [h for h in ctx.hosts if h.kind == "hyperv"]
    if not windows:
        yield Result(8, "migration networks", PASS, ", ".join(h.host for h in ctx.hosts), "no Hyper-V host")
        return
    first = windows[0]
    for host in windows[1:]:
        if host.migration_networks != first.migration_networks:
            yield Result(8, "migration networks", FAIL, host.host,
                         f"migration networks {host.migration_networks} differ from {first.host}'s "
                         f"{first.migration_networks}: the order is global",
                         _fix(host, linux="", hyperv="Get-VMMigrationNetwork | Remove-VMMigrationNetwork; "
                              + "; ".join(f"Add-VMMigrationNetwork {n} -Priority {i + 1}"
                                          for i, n in enumerate(first.migration_networks))))
    for host in windows:
        excluded = {n.address for n in host.cluster_networks if n.excluded_from_migration or n.role == 0}
        storage = [n for n in host.migration_networks if n in excluded]
        if storage:
            yield Result(8, "migration networks", FAIL, host.host,
                         f"{storage[0]} is a storage (iSCSI) or non-cluster network, yet it carries migrations",
                         _fix(host, linux="", hyperv=f"Remove-VMMigrationNetwork {storage[0]}"))
            continue
        best = _fastest_private(host)
        if not host.migration_networks:
            yield Result(8, "migration networks", WARN, host.host, "no migration network is set: any network is used",
                         _fix(host, linux="", hyperv=f"Add-VMMigrationNetwork {best} -Priority 1" if best else
                              "Add-VMMigrationNetwork <subnet> -Priority 1"))
        elif best and host.migration_networks[0] != best:
            yield Result(8, "migration networks", WARN, host.host,
                         f"{host.migration_networks[0]} comes first, but {best} is the fastest cluster network without "
                         "a gateway", _fix(host, linux="", hyperv=f"Set-VMMigrationNetwork {best} -Priority 1"))
        else:
            yield Result(8, "migration networks", PASS, host.host,
                         f"{host.migration_networks[0]} first: the fastest private cluster network")


def _fastest_private(host: HostFacts) -> str | None:
    candidates = []
    for n in host.cluster_networks:
        if not n.role or n.excluded_from_migration:
            continue
        net = ipaddress.ip_network(n.address, strict=False)
        nics = [a for a in host.adapters if net in a.networks()]
        if any(a.default_gateway for a in nics):
            continue  # the public network
        candidates.append((max((a.speed_mbps or 0) for a in nics) if nics else 0, n.address))
    return max(candidates)[1] if candidates else None


# -- 9. NetBIOS on the migration network ----------------------------------------------------------

def netbios(ctx: Context) -> Iterator[Result]:
    for host in ctx.hosts:
        others = [h for h in ctx.hosts if h is not host]
        if host.kind == "linux":
            shared = _common_networks([host, *others]) if others else []
            if host.netbios_running and shared:
                yield Result(9, "NetBIOS", WARN, host.host,
                             f"NetBIOS name service runs on {host.host}, which shares {shared[0]} with the other hosts",
                             _fix(host, linux="systemctl disable --now nmbd (or 'disable netbios = yes' in smb.conf)",
                                  hyperv=""))
            else:
                yield Result(9, "NetBIOS", PASS, host.host, "no NetBIOS name service")
            continue
        nets = [ipaddress.ip_network(n, strict=False) for n in host.migration_networks[:1]]
        nets += [ipaddress.ip_network(n.address, strict=False) for n in host.cluster_networks if n.role == 1]
        bad = [a for a in host.adapters if a.netbios and any(n in nets for n in a.networks())]
        for a in bad:
            yield Result(9, "NetBIOS", WARN, host.host,
                         f"NetBIOS over TCP/IP is enabled on {a.name}, on the dedicated migration/CSV network",
                         _fix(host, linux="", hyperv="Get-CimInstance Win32_NetworkAdapterConfiguration -Filter "
                              f"\"InterfaceIndex=$((Get-NetAdapter -Name '{a.name}').ifIndex)\" | Invoke-CimMethod "
                              "-MethodName SetTcpipNetbios -Arguments @{TcpipNetbiosOptions=2}"))
        if not bad:
            yield Result(9, "NetBIOS", PASS, host.host, "NetBIOS is off on the migration/CSV networks")


# -- 10. larger packets -----------------------------------------------------------------------------

def _paths(a: HostFacts, b: HostFacts) -> list[tuple[Any, Adapter, Adapter]]:
    """(network, a's adapter, b's adapter) for every network both hosts have an address in."""
    out = []
    for x in a.adapters:
        for net in x.networks():
            y = next((y for y in b.adapters if net in y.networks()), None)
            if y is not None:
                out.append((net, x, y))
    return out


def packet_size(ctx: Context) -> Iterator[Result]:
    src = ctx.source
    for dst in ctx.destinations:
        pair = _pair(src, dst)
        paths = _paths(src, dst)
        if not paths:
            yield Result(10, "packet size", WARN, pair, "the hosts share no network: nothing to compare")
            continue
        bad = False
        for net, x, y in paths:
            if x.mtu and y.mtu and x.mtu != y.mtu:
                bad = True
                yield Result(10, "packet size", FAIL, pair,
                             f"on {net}, {x.name} has MTU {x.mtu} and {y.name} has {y.mtu}: the larger side's "
                             "packets are dropped or fragmented",
                             _fix(dst, linux=f"ip link set dev {y.name} mtu {x.mtu}",
                                  hyperv=f'Set-NetAdapterAdvancedProperty -Name "{y.name}" -RegistryKeyword '
                                         f'"*JumboPacket" -RegistryValue {x.mtu + 14}'))
        for here, there in ((src, dst), (dst, src)):
            addresses = {str(ipaddress.ip_interface(a).ip) for ad in there.adapters for a in ad.addresses}
            for probe in here.probes:
                if probe.peer in addresses and not probe.ok:
                    bad = True
                    yield Result(10, "packet size", FAIL, pair,
                                 f"a {probe.size}-byte don't-fragment ping from {here.host} to {probe.peer} failed: "
                                 "something on the path carries smaller packets",
                                 f"on {here.host}: tracepath {probe.peer} finds the hop with the smaller MTU: raise "
                                 "it, or lower this host's MTU to what the path carries")
        if not bad:
            probed = any(p.ok and p.peer in {str(ipaddress.ip_interface(a).ip) for ad in dst.adapters
                                             for a in ad.addresses} for p in src.probes)
            yield Result(10, "packet size", PASS, pair, "MTUs agree on every shared network"
                         + (", and a full-size don't-fragment ping passed" if probed else ""))


# -- 11. checksum offload ---------------------------------------------------------------------------

def checksum_offload(ctx: Context) -> Iterator[Result]:
    src = ctx.source
    for dst in ctx.destinations:
        pair = _pair(src, dst)
        bad = False
        for net, x, y in _paths(src, dst):
            keys = [k for k in (*OFFLOADS, "rx", "tx") if k in x.checksum_offload and k in y.checksum_offload]
            differ = [k for k in keys if x.checksum_offload[k] != y.checksum_offload[k]]
            if differ:
                bad = True
                want = {k: x.checksum_offload[k] for k in differ}
                yield Result(11, "checksum offload", FAIL, pair,
                             f"on {net}, {', '.join(differ)} checksum offload differs ({x.name} on {src.host}: "
                             f"{_onoff(want)}; {y.name} on {dst.host}: the opposite)",
                             _fix(dst, linux=f"ethtool -K {y.name} " + " ".join(f"{k} {'on' if v else 'off'}"
                                                                                  for k, v in want.items()),
                                  hyperv=_offload_ps(y.name, want)))
        for host in (src, dst):
            for a in host.adapters:
                if a.switch and a.checksum_offload.get("ipv4") and _known_bad_teaming(host):
                    bad = True
                    yield Result(11, "checksum offload", WARN, host.host,
                                 f"{a.name} is bound to switch {a.switch} with IPv4 checksum offload on, under "
                                 f"teaming software known to lose guest traffic that way",
                                 _fix(host, linux="", hyperv=f'Disable-NetAdapterChecksumOffload -Name "{a.name}" -IpIPv4'))
        if not bad:
            yield Result(11, "checksum offload", PASS, pair, "checksum offloads agree on every shared network")


def _onoff(values: dict[str, bool]) -> str:
    return ", ".join(f"{k} {'on' if v else 'off'}" for k, v in values.items())


def _offload_ps(name: str, want: dict[str, bool]) -> str:
    switches = {"ipv4": "-IpIPv4", "tcp_ipv4": "-TcpIPv4", "udp_ipv4": "-UdpIPv4", "tcp_ipv6": "-TcpIPv6",
                "udp_ipv6": "-UdpIPv6"}
    on = [switches[k] for k, v in want.items() if v and k in switches]
    off = [switches[k] for k, v in want.items() if not v and k in switches]
    parts = []
    if on:
        parts.append(f'Enable-NetAdapterChecksumOffload -Name "{name}" {" ".join(on)}')
    if off:
        parts.append(f'Disable-NetAdapterChecksumOffload -Name "{name}" {" ".join(off)}')
    return "; ".join(parts)


def _known_bad_teaming(host: HostFacts) -> bool:
    version = _hp_ncu(host)
    return version is not None and version < HP_NCU_FIXED


def _hp_ncu(host: HostFacts) -> tuple[int, ...] | None:
    for name, version in host.teaming_software.items():
        if "network configuration utility" in name.lower() or name.strip().upper() == "HP NCU":
            try:
                return tuple(int(p) for p in version.split(".")[:2])
            except ValueError:
                return (0,)
    return None


# -- 12. teaming ------------------------------------------------------------------------------------

def teaming(ctx: Context) -> Iterator[Result]:
    for host in ctx.hosts:
        version = _hp_ncu(host)
        if host.kind == "hyperv" and version is not None and version < HP_NCU_FIXED:
            yield Result(12, "teaming", FAIL, host.host,
                         f"HP Network Configuration Utility {'.'.join(map(str, version))} is below 9.35, which "
                         "Hyper-V hosts need", _fix(host, linux="", hyperv="install HP NCU 9.35 or later"))
    src = ctx.source
    for dst in ctx.destinations:
        pair = _pair(src, dst)
        bad = False
        theirs = {t.name: t for t in dst.teams}
        for team in src.teams:
            other = theirs.get(team.name)
            if other is None:
                bad = True
                yield Result(12, "teaming", WARN, pair, f"{dst.host} has no team/bond named {team.name}")
                continue
            if team.mode != other.mode:
                bad = True
                yield Result(12, "teaming", FAIL, pair,
                             f"{team.name} is {team.mode} on {src.host} but {other.mode} on {dst.host}",
                             _fix(dst, linux=f"ip link set dev {team.name} down && ip link set dev {team.name} type "
                                             f"bond mode {_bond_mode_name(team.mode)} && ip link set dev {team.name} up",
                                  hyperv=f'Set-NetLbfoTeam -Name "{team.name}" -TeamingMode {team.mode}'))
            if team.mtu and other.mtu and team.mtu != other.mtu:
                bad = True
                yield Result(12, "teaming", FAIL, pair, f"{team.name} has MTU {team.mtu} on {src.host} but "
                             f"{other.mtu} on {dst.host}",
                             _fix(dst, linux=f"ip link set dev {team.name} mtu {team.mtu}",
                                  hyperv=f'Set-NetAdapterAdvancedProperty -Name "{team.name}" -RegistryKeyword '
                                         f'"*JumboPacket" -RegistryValue {team.mtu + 14}'))
            if len(team.members) != len(other.members):
                bad = True
                yield Result(12, "teaming", WARN, pair, f"{team.name} has {len(team.members)} member(s) on "
                             f"{src.host} and {len(other.members)} on {dst.host}")
        if not bad:
            yield Result(12, "teaming", PASS, pair, "teams and bonds agree" if src.teams else "no team or bond")


_BOND_MODES = {"load balancing (round-robin)": "balance-rr", "fault-tolerance (active-backup)": "active-backup",
               "load balancing (xor)": "balance-xor", "fault-tolerance (broadcast)": "broadcast",
               "ieee 802.3ad dynamic link aggregation": "802.3ad", "transmit load balancing": "balance-tlb",
               "adaptive load balancing": "balance-alb"}


def _bond_mode_name(mode: str) -> str:
    return _BOND_MODES.get(mode.lower(), mode)


# -- 13. encapsulation ------------------------------------------------------------------------------

def encapsulation(ctx: Context) -> Iterator[Result]:
    fabric = ctx.netvirt
    names = ", ".join(h.host for h in ctx.hosts)
    if fabric is None:
        yield Result(13, "encapsulation", PASS, names, "no network virtualization model given (--netvirt)")
        return
    overhead = max((ENCAPSULATION_OVERHEAD[n.encapsulation] for n in fabric.vm_networks.values()), default=0)
    kinds = "/".join(sorted({n.encapsulation.upper() for n in fabric.vm_networks.values()})) or "none"
    for host in ctx.hosts:
        model_host = fabric.hosts.get(host.host)
        if model_host is None:
            yield Result(13, "encapsulation", WARN, host.host, f"{host.host} is not a host of the netvirt model")
            continue
        pa = str(model_host.pa)
        adapter = next((a for a in host.adapters if any(str(ipaddress.ip_interface(x).ip) == pa for x in a.addresses)),
                       None)
        if adapter is None or adapter.mtu is None:
            yield Result(13, "encapsulation", WARN, host.host, f"no adapter of {host.host} holds its PA {pa}")
            continue
        if adapter.mtu >= 1500 + overhead:
            yield Result(13, "encapsulation", PASS, host.host,
                         f"{adapter.name} (PA {pa}) carries MTU {adapter.mtu}: 1500-byte guest packets plus "
                         f"{overhead} bytes of {kinds} fit")
        else:
            yield Result(13, "encapsulation", FAIL, host.host,
                         f"{adapter.name} (PA {pa}) has MTU {adapter.mtu}: 1500-byte guest packets plus {overhead} "
                         f"bytes of {kinds} do not fit; raise it to {1500 + overhead}, or lower the guests' MTU to "
                         f"{adapter.mtu - overhead}",
                         _fix(host, linux=f"ip link set dev {adapter.name} mtu {1500 + overhead}",
                              hyperv=f'Set-NetAdapterAdvancedProperty -Name "{adapter.name}" -RegistryKeyword '
                                     f'"*JumboPacket" -RegistryValue {1500 + overhead + 14}'))


# -- 14. VMBus buffers ------------------------------------------------------------------------------

def vmbus_buffers(ctx: Context) -> Iterator[Result]:
    names = ", ".join(h.host for h in ctx.hosts)
    if ctx.rate is None:
        yield Result(14, "VMBus buffers", PASS, names, "no packet rate given (--rate)")
        return
    from ..vmbus.sizing import plan_for_rate, plan_for_size

    need = plan_for_rate(ctx.rate)
    step = next((mb for mb in VMBUS_STEPS_MB if mb * 1024 * 1024 >= need.buffer_bytes), None)
    if step is None:
        top = plan_for_size(VMBUS_STEPS_MB[-1] * 1024 * 1024)
        yield Result(14, "VMBus buffers", FAIL, names,
                     f"{ctx.rate:,} packets/s needs {need.kilobytes:,} KB of buffer; 4 MB, the useful maximum, takes "
                     f"{top.max_packets_per_second:,}: spread the load over more NICs or queues")
        return
    for host in ctx.hosts:
        have = host.vmbus_receive_buffer
        if have is None:
            yield Result(14, "VMBus buffers", WARN, host.host, "the synthetic NIC's receive buffer size is not known",
                         f"in the guest: vhdkit vmbus plan --rate {ctx.rate} --instance <NNNN> --reg nic.reg, then "
                         "import nic.reg")
        elif have < step * 1024 * 1024:
            yield Result(14, "VMBus buffers", FAIL, host.host,
                         f"a {have // 1024:,} KB receive buffer takes {plan_for_size(have).max_packets_per_second:,} "
                         f"packets/s, not {ctx.rate:,}: use {step} MB (guest memory: {2 * step} MB per NIC with the "
                         "send buffer)",
                         f"in the guest: vhdkit vmbus plan --rate {ctx.rate} --instance <NNNN> --reg nic.reg, then "
                         "import nic.reg")
        else:
            yield Result(14, "VMBus buffers", PASS, host.host, f"{have // 1024:,} KB takes {ctx.rate:,} packets/s")


# -- 15. storage for the transfer type --------------------------------------------------------------

def storage(ctx: Context) -> Iterator[Result]:
    names = ", ".join(h.host for h in ctx.hosts)
    if ctx.transfer is None:
        yield Result(15, "storage", PASS, names, "no transfer type given (--type)")
        return
    if ctx.transfer == "live":
        files = [f for v in ctx.vms(ctx.source) for f in v.files]
        if not files:
            yield Result(15, "storage", WARN, names, "the source lists no VM files to check")
            return
        for f in files:
            share = _share_of(f)
            if share is None:
                yield Result(15, "storage", FAIL, names, f"{f} is on {ctx.source.host}'s own storage: Live moves only "
                             "the running state, so every file must be on an SMB 3 share both hosts reach",
                             "move the storage first (vhdkit vm move --type live-storage), or use --type live-vsm")
                continue
            yield from _share_results(ctx, share, ctx.hosts)
    else:
        if ctx.target is None or _share_of(ctx.target) is None:
            yield Result(15, "storage", PASS, names, "the target is a folder of the destination")
            return
        yield from _share_results(ctx, _share_of(ctx.target) or "", ctx.destinations)


def _share_of(location: str) -> str | None:
    """``smb://server/share`` (or ``\\\\server\\share``) of a path on a share, without user or port;
    None for local paths."""
    if location.startswith("smb://"):  # the server and share name: a port is how one host reaches it, not which
        rest = location[len("smb://"):].split("/")
        server = rest[0].rsplit("@", 1)[-1]
        server = server[:server.index("]") + 1] if server.startswith("[") else server.split(":", 1)[0]
        return "smb://" + server + "/" + rest[1] if len(rest) > 1 else None
    if location.startswith("\\\\"):
        parts = location[2:].split("\\")
        return f"smb://{parts[0]}/{parts[1]}" if len(parts) > 1 else None
    return None


def _share_results(ctx: Context, share: str, hosts: Sequence[HostFacts]) -> Iterator[Result]:
    for host in hosts:
        seen = next((s for s in host.shares if _share_of(s.url) == share), None)
        if seen is None or not seen.reachable:
            yield Result(15, "storage", FAIL, host.host, f"{host.host} does not reach {share}",
                         _fix(host, linux=f"vhdkit preflight collect --share {share}  (then grant this host access)",
                              hyperv=f"Grant-SmbShareAccess -Name <share> -AccountName <DOMAIN>\\{host.host}$ "
                                     "-AccessRight Full  (on the file server)"))
        elif seen.dialect and seen.dialect < "3":
            yield Result(15, "storage", FAIL, host.host, f"{share} speaks SMB {seen.dialect}: Hyper-V needs SMB 3.0 or "
                         "later", "upgrade the file server, or set its minimum protocol to SMB3")
        elif seen.continuously_available is not True:
            yield Result(15, "storage", WARN, host.host, f"{share} (SMB {seen.dialect}) is not known to be continuously "
                         "available: a stand-alone file server is not highly available",
                         "on the file server: a scale-out or clustered share (New-SmbShare -ContinuouslyAvailable $true)")
        else:
            yield Result(15, "storage", PASS, host.host, f"{share}: SMB {seen.dialect}, continuously available")


RULES: list[tuple[int, str, Callable[[Context], Iterator[Result]]]] = [
    (1, "switch names", switch_names), (2, "processors", processors), (3, "metric order", metric_order),
    (4, "unused adapters", unused_adapters), (5, "SMB bindings", smb_bindings), (6, "CSV network", csv_network),
    (7, "NTLM", ntlm), (8, "migration networks", migration_order), (9, "NetBIOS", netbios),
    (10, "packet size", packet_size), (11, "checksum offload", checksum_offload), (12, "teaming", teaming),
    (13, "encapsulation", encapsulation), (14, "VMBus buffers", vmbus_buffers), (15, "storage", storage),
]


def run(hosts: Sequence[HostFacts], *, only: Sequence[int] | None = None, **options: Any) -> list[Result]:
    """Every rule (or ``only`` those numbers) over ``hosts``: the source first, then destinations."""
    if len(hosts) < 2:
        raise ValueError("a preflight needs a source host and at least one destination")
    transfer = options.get("transfer")
    if transfer is not None and transfer not in TRANSFER_TYPES:
        raise ValueError(f"transfer type must be one of {', '.join(TRANSFER_TYPES)}, not {transfer!r}")
    ctx = Context(list(hosts), **options)
    out: list[Result] = []
    for number, _, rule in RULES:
        if only is None or number in only:
            out.extend(rule(ctx))
    return out
