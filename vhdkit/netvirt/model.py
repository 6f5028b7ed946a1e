"""The network virtualization model, as VMM manages Hyper-V Network Virtualization.

Fabric side: a logical network with network sites (subnet/VLAN pairs for host groups) and a
provider-address (PA) pool; each host gets a PA from it (one PA per host, as HNVv2 does per
team member; facts: specs/netvirt.md).
Tenant side: a VM network is a routing domain (a GUID) holding VM subnets; each VM subnet has a
VSID (unique in the datacenter), a customer-address (CA) pool, and its gateway, the lowest address
of the subnet, owned by the distributed router on every host. Two VM networks may use the same CA
prefixes; within one they may not overlap.
A VM's vNIC has a MAC and a CA for its whole life; moving the VM changes only the PA behind it.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from ..errors import NetworkModelError
from .pools import IPAddress, IPNetwork, LowestFree, StaticIPPool, VsidPool

#: Hyper-V's own OUI: VMM's default MAC pools hand out 00:15:5D:xx:xx:xx.
HYPERV_OUI = 0x00155D
ENCAPSULATIONS = ("nvgre", "vxlan")


def format_mac(value: int) -> str:
    return ":".join(f"{(value >> shift) & 0xFF:02x}" for shift in range(40, -8, -8))


def parse_mac(text: str) -> int:
    digits = text.replace(":", "").replace("-", "")
    if len(digits) != 12:
        raise NetworkModelError(f"{text!r} is not a MAC address")
    try:
        return int(digits, 16)
    except ValueError as e:
        raise NetworkModelError(f"{text!r} is not a MAC address") from e


@dataclass
class NetworkSite:
    name: str
    host_groups: list[str]
    subnets: list[tuple[IPNetwork, int]]  # (subnet, VLAN id; 0 = untagged)


@dataclass
class LogicalNetwork:
    name: str
    pa_pool: StaticIPPool
    sites: list[NetworkSite] = field(default_factory=list)
    network_virtualization: bool = True


@dataclass
class Host:
    name: str
    logical_network: LogicalNetwork
    pa: IPAddress
    host_group: str = "All Hosts"

    @property
    def mac(self) -> int:
        """The host's provider-side MAC (outer Ethernet source), derived from its PA."""
        return 0x02_00_00_00_00_00 | (int(self.pa) & 0xFFFFFFFF)


@dataclass
class VMSubnet:
    name: str
    network: "VMNetwork"
    prefix: IPNetwork
    vsid: int
    pool: StaticIPPool

    @property
    def gateway(self) -> IPAddress:
        """The distributed router's address in this subnet: the lowest one (HNV's rule)."""
        return self.prefix[1]

    @property
    def router_mac(self) -> int:
        """The distributed router's MAC in this subnet (the same on every host)."""
        return 0x02_00_00_00_00_00 | self.vsid

    def __repr__(self) -> str:
        return f"<VMSubnet {self.network.name}/{self.name} {self.prefix} VSID {self.vsid}>"


@dataclass
class CustomerRoute:
    """New-NetVirtualizationCustomerRoute: within a routing domain, a prefix reached via a next hop
    (a gateway VM's CA); the lowest metric among the longest matching prefixes wins."""

    prefix: IPNetwork
    next_hop: IPAddress
    metric: int = 256


@dataclass
class VMNetwork:
    name: str
    logical_network: LogicalNetwork
    routing_domain: uuid.UUID
    encapsulation: str = "nvgre"
    subnets: dict[str, VMSubnet] = field(default_factory=dict)
    routes: list[CustomerRoute] = field(default_factory=list)

    def subnet_of(self, address: IPAddress) -> VMSubnet | None:
        for subnet in self.subnets.values():
            if address in subnet.prefix:
                return subnet
        return None

    def __repr__(self) -> str:
        return f"<VMNetwork {self.name} {{{self.routing_domain}}}>"


@dataclass
class VNic:
    vm: "VM"
    name: str
    mac: int
    ca: IPAddress
    subnet: VMSubnet
    gateway: bool = False  # an HNV gateway VM's NIC: customer routes may point at it

    @property
    def label(self) -> str:
        return self.vm.name if len(self.vm.nics) == 1 else f"{self.vm.name}/{self.name}"

    @property
    def host(self) -> Host:
        return self.vm.host

    def __repr__(self) -> str:
        return f"<VNic {self.label} {self.ca} {format_mac(self.mac)} on {self.subnet!r}>"


@dataclass
class VM:
    name: str
    host: Host
    nics: list[VNic] = field(default_factory=list)


class Fabric:
    """Everything one VMM server knows: logical networks, hosts, VM networks and VMs."""

    def __init__(self) -> None:
        self.logical_networks: dict[str, LogicalNetwork] = {}
        self.hosts: dict[str, Host] = {}
        self.vm_networks: dict[str, VMNetwork] = {}
        self.vms: dict[str, VM] = {}
        self.vsids = VsidPool()
        self._macs = LowestFree(HYPERV_OUI << 24 | 0x000001, HYPERV_OUI << 24 | 0xFFFFFF)
        self._subnet_by_vsid: dict[int, VMSubnet] = {}

    # -- fabric ---------------------------------------------------------------------------
    def add_logical_network(self, name: str, pa_pool: StaticIPPool, sites: Iterable[NetworkSite] = (),
                            network_virtualization: bool = True) -> LogicalNetwork:
        self._new_name(self.logical_networks, name, "logical network")
        for site in sites:
            for subnet, vlan in site.subnets:
                if not 0 <= vlan <= 4094:
                    raise NetworkModelError(f"network site {site.name}: VLAN {vlan} is out of range (0-4094)")
        ln = LogicalNetwork(name, pa_pool, list(sites), network_virtualization)
        self.logical_networks[name] = ln
        return ln

    def add_host(self, name: str, logical_network: str, pa: str | None = None, host_group: str = "All Hosts") -> Host:
        self._new_name(self.hosts, name, "host")
        ln = self._get(self.logical_networks, logical_network, "logical network")
        address = ln.pa_pool.assign(f"host {name}", pa)
        host = Host(name, ln, address, host_group)
        self.hosts[name] = host
        return host

    # -- tenants --------------------------------------------------------------------------
    def add_vm_network(self, name: str, logical_network: str, *, routing_domain: str | None = None,
                       encapsulation: str = "nvgre") -> VMNetwork:
        self._new_name(self.vm_networks, name, "VM network")
        ln = self._get(self.logical_networks, logical_network, "logical network")
        if not ln.network_virtualization:
            raise NetworkModelError(f"logical network {ln.name} does not allow network virtualization")
        if encapsulation not in ENCAPSULATIONS:
            raise NetworkModelError(f"VM network {name}: encapsulation must be one of {', '.join(ENCAPSULATIONS)}")
        # A GUID per routing domain; derived from the name when the model gives none, so a model
        # loads to the same GUIDs every time.
        rdid = uuid.UUID(routing_domain) if routing_domain else uuid.uuid5(uuid.NAMESPACE_URL, f"vhdkit:rd:{name}")
        if any(n.routing_domain == rdid for n in self.vm_networks.values()):
            raise NetworkModelError(f"routing domain {{{rdid}}} is already used by another VM network")
        network = VMNetwork(name, ln, rdid, encapsulation)
        self.vm_networks[name] = network
        return network

    def add_vm_subnet(self, network: str, name: str, prefix: str, *, vsid: int | None = None,
                      start: str | None = None, end: str | None = None, reserved: Iterable[str] = (),
                      vips: Iterable[str] = (), dns_servers: Iterable[str] = ()) -> VMSubnet:
        vm_network = self._get(self.vm_networks, network, "VM network")
        self._new_name(vm_network.subnets, name, f"VM subnet of {network}")
        try:
            net = ipaddress.ip_network(prefix)
        except ValueError as e:
            raise NetworkModelError(f"VM subnet {network}/{name}: {prefix!r} is not a subnet: {e}") from e
        for other in vm_network.subnets.values():
            if net.version == other.prefix.version and net.overlaps(other.prefix):
                raise NetworkModelError(f"VM subnet {network}/{name} ({net}) overlaps {other.name} ({other.prefix}) "
                                        "in the same routing domain")
        if net.num_addresses < 4:
            raise NetworkModelError(f"VM subnet {network}/{name}: {net} leaves no address besides the gateway")
        pool = StaticIPPool(f"{network}/{name}", net, start, end, reserved=reserved, vips=vips,
                            gateways=[str(net[1])], dns_servers=dns_servers)
        subnet = VMSubnet(name, vm_network, net, self.vsids.assign(vsid), pool)
        vm_network.subnets[name] = subnet
        self._subnet_by_vsid[subnet.vsid] = subnet
        return subnet

    def add_route(self, network: str, prefix: str, next_hop: str, metric: int = 256) -> CustomerRoute:
        vm_network = self._get(self.vm_networks, network, "VM network")
        route = CustomerRoute(ipaddress.ip_network(prefix), ipaddress.ip_address(next_hop), metric)
        vm_network.routes.append(route)
        return route

    def add_vm(self, name: str, host: str, nics: Iterable[dict]) -> VM:
        """``nics``: dicts with network, subnet and optionally name, ca, mac, gateway."""
        self._new_name(self.vms, name, "VM")
        vm = VM(name, self._get(self.hosts, host, "host"))
        made: list[VNic] = []
        try:
            for i, spec in enumerate(nics):
                network = self._get(self.vm_networks, spec["network"], "VM network")
                subnet = self._get(network.subnets, spec["subnet"], f"VM subnet of {network.name}")
                if subnet.network.logical_network is not vm.host.logical_network:
                    raise NetworkModelError(f"VM {name}: host {host} is not on logical network "
                                            f"{subnet.network.logical_network.name}")
                nic_name = spec.get("name", f"nic{i}")
                ca = subnet.pool.assign(f"{name}/{nic_name}", spec.get("ca"))
                try:
                    mac = self._take_mac(spec.get("mac"), name)
                except NetworkModelError:
                    subnet.pool.release(ca)
                    raise
                made.append(VNic(vm, nic_name, mac, ca, subnet, bool(spec.get("gateway", False))))
                vm.nics.append(made[-1])
        except (KeyError, NetworkModelError) as e:
            for nic in made:
                nic.subnet.pool.release(nic.ca)
                self._macs.give_back(nic.mac)
            if isinstance(e, KeyError):
                raise NetworkModelError(f"VM {name}: a vNIC lacks {e.args[0]!r}") from e
            raise
        self.vms[name] = vm
        return vm

    def remove_vm(self, name: str) -> None:
        vm = self._get(self.vms, name, "VM")
        for nic in vm.nics:
            nic.subnet.pool.release(nic.ca)
            self._macs.give_back(nic.mac)
        del self.vms[name]

    def move_vm(self, name: str, host: str) -> VM:
        """Live migration: the VM's CAs and MACs stay; only the host (so the PA) changes."""
        vm = self._get(self.vms, name, "VM")
        target = self._get(self.hosts, host, "host")
        if target.logical_network is not vm.host.logical_network:
            raise NetworkModelError(f"host {host} is not on logical network {vm.host.logical_network.name}")
        vm.host = target
        return vm

    # -- queries --------------------------------------------------------------------------
    def nics(self) -> Iterator[VNic]:
        for vm in self.vms.values():
            yield from vm.nics

    def subnet_by_vsid(self, vsid: int) -> VMSubnet | None:
        return self._subnet_by_vsid.get(vsid)

    def find_nic(self, label: str) -> VNic:
        """A vNIC by "vm" (a VM with one vNIC) or "vm/nic"."""
        vm_name, _, nic_name = label.partition("/")
        vm = self._get(self.vms, vm_name, "VM")
        if not nic_name:
            if len(vm.nics) != 1:
                raise NetworkModelError(f"VM {vm_name} has {len(vm.nics)} vNICs: name one as {vm_name}/NIC")
            return vm.nics[0]
        for nic in vm.nics:
            if nic.name == nic_name:
                return nic
        raise NetworkModelError(f"VM {vm_name} has no vNIC {nic_name}")

    def _take_mac(self, wanted: str | None, vm: str) -> int:
        if wanted is None:
            value = self._macs.take()
            if value is None:
                raise NetworkModelError("the MAC pool is exhausted")
            return value
        value = parse_mac(wanted)
        if value in self._macs.taken:
            raise NetworkModelError(f"VM {vm}: MAC {format_mac(value)} is already in use")
        if not self._macs.take_value(value):  # outside the pool (another OUI): only kept unique
            self._macs.taken.add(value)
        return value

    @staticmethod
    def _new_name(table: dict, name: str, what: str) -> None:
        if not name or name in table:
            raise NetworkModelError(f"{what} {name!r} is {'already defined' if name else 'unnamed'}")

    @staticmethod
    def _get(table: dict, name: str, what: str):  # noqa: ANN205 - the table's own type
        try:
            return table[name]
        except KeyError:
            known = ", ".join(sorted(table)) or "none"
            raise NetworkModelError(f"no {what} named {name!r} (known: {known})") from None
