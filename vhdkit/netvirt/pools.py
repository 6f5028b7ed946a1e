"""Pools that hand out the lowest free value: static IP address pools (VMM's
New-SCStaticIPAddressPool) and the datacenter's VSID space.

Assignment is deterministic (always the lowest free value, so a model loads the same way every
time) and O(log n): values below a cursor that were given back wait in a heap; above the cursor
nothing was ever assigned.
"""

from __future__ import annotations

import heapq
import ipaddress
from typing import Callable, Iterable, Iterator, Union

from ..errors import NetworkModelError, PoolExhaustedError

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

#: VSIDs Hyper-V accepts (New-NetVirtualizationLookupRecord -VirtualSubnetID: 4096..2^24-2);
#: RFC 7637 reserves 0..0xFFF and 0xFFFFFF.
VSID_MIN, VSID_MAX = 4096, 16_777_214


class LowestFree:
    """Integers in [first, last] not excluded, handed out lowest first."""

    def __init__(self, first: int, last: int, excluded: Callable[[int], bool] = lambda v: False) -> None:
        self.first, self.last = first, last
        self._excluded = excluded
        self._cursor = first  # nothing at or above it was ever handed out
        self._returned: list[int] = []  # given back, all below the cursor
        self.taken: set[int] = set()

    def take(self) -> int | None:
        """The lowest free value, now taken; None when there is none."""
        if self._returned:
            value = heapq.heappop(self._returned)
        else:
            while self._cursor <= self.last and (self._excluded(self._cursor) or self._cursor in self.taken):
                self._cursor += 1
            if self._cursor > self.last:
                return None
            value = self._cursor
            self._cursor += 1
        self.taken.add(value)
        return value

    def take_value(self, value: int) -> bool:
        """Take this value if it is free (a model that names its addresses); False if it is not."""
        if not self.first <= value <= self.last or self._excluded(value) or value in self.taken:
            return False
        self.taken.add(value)
        if value in self._returned:
            self._returned.remove(value)
            heapq.heapify(self._returned)
        return True

    def give_back(self, value: int) -> None:
        self.taken.discard(value)
        if value < self._cursor:
            heapq.heappush(self._returned, value)


class VsidPool:
    """The datacenter's virtual subnet IDs: unique across every VM network."""

    def __init__(self) -> None:
        self._free = LowestFree(VSID_MIN, VSID_MAX)

    def assign(self, wanted: int | None = None) -> int:
        if wanted is None:
            value = self._free.take()
            if value is None:
                raise PoolExhaustedError(f"every VSID from {VSID_MIN} to {VSID_MAX} is in use")
            return value
        check_vsid(wanted)
        if not self._free.take_value(wanted):
            raise NetworkModelError(f"VSID {wanted} is already in use: VSIDs are unique in a datacenter")
        return wanted

    def release(self, vsid: int) -> None:
        self._free.give_back(vsid)


def check_vsid(vsid: int) -> int:
    if not isinstance(vsid, int) or not VSID_MIN <= vsid <= VSID_MAX:
        raise NetworkModelError(f"VSID {vsid!r} is out of range: Hyper-V takes {VSID_MIN} to {VSID_MAX}")
    return vsid


def parse_addresses(items: Iterable[str], subnet: IPNetwork, what: str) -> set[int]:
    """Addresses and "first-last" ranges (VMM's IPAddressReservedSet / VIPAddressSet syntax)."""
    out: set[int] = set()
    for item in items:
        text = str(item).strip()
        first_text, _, last_text = text.partition("-")
        first = _address(first_text, subnet, what)
        last = _address(last_text, subnet, what) if last_text else first
        if last < first:
            raise NetworkModelError(f"{what} range {text} ends before it starts")
        out.update(range(int(first), int(last) + 1))
    return out


def _address(text: str, subnet: IPNetwork, what: str) -> IPAddress:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError as e:
        raise NetworkModelError(f"{what}: {text!r} is not an IP address") from e
    if address not in subnet:
        raise NetworkModelError(f"{what}: {address} is outside the subnet {subnet}")
    return address


class StaticIPPool:
    """A range of a subnet to assign from, minus reserved addresses and VIPs (handed out only by
    ``assign_vip``), never the subnet's network or broadcast address or its gateways."""

    def __init__(self, name: str, subnet: str | IPNetwork, start: str | None = None, end: str | None = None, *,
                 reserved: Iterable[str] = (), vips: Iterable[str] = (), gateways: Iterable[str] = (),
                 dns_servers: Iterable[str] = (), dns_suffix: str | None = None) -> None:
        self.name = name
        try:
            self.subnet: IPNetwork = ipaddress.ip_network(subnet) if isinstance(subnet, str) else subnet
        except ValueError as e:
            raise NetworkModelError(f"pool {name}: {subnet!r} is not a subnet in CIDR form: {e}") from e
        net, last = int(self.subnet.network_address), int(self.subnet.broadcast_address)
        self.gateways = [_address(g, self.subnet, f"pool {name} gateway") for g in gateways]
        default_start = net + 1 if self.subnet.num_addresses > 2 else net
        self.start = _address(start, self.subnet, f"pool {name} start") if start else self.subnet[default_start - net]
        self.end = (_address(end, self.subnet, f"pool {name} end") if end
                    else self.subnet[(last - 1 if self.subnet.num_addresses > 2 else last) - net])
        if self.end < self.start:
            raise NetworkModelError(f"pool {name}: the range {self.start}-{self.end} ends before it starts")
        self.reserved = parse_addresses(reserved, self.subnet, f"pool {name} reserved")
        self.vips = parse_addresses(vips, self.subnet, f"pool {name} VIP")
        outside = {v for v in self.reserved | self.vips if not int(self.start) <= v <= int(self.end)}
        if outside:
            raise NetworkModelError(f"pool {name}: reserved addresses and VIPs must lie in the range "
                                    f"{self.start}-{self.end}; {ipaddress.ip_address(min(outside))} does not")
        both = self.reserved & self.vips
        if both:
            raise NetworkModelError(f"pool {name}: {ipaddress.ip_address(min(both))} is both reserved and a VIP")
        self.dns_servers = [ipaddress.ip_address(d) for d in dns_servers]
        self.dns_suffix = dns_suffix
        never = {net, last} if self.subnet.num_addresses > 2 else set()
        never |= {int(g) for g in self.gateways}
        self._never = never
        self._ordinary = LowestFree(int(self.start), int(self.end),
                                    lambda v: v in never or v in self.reserved or v in self.vips)
        self._vip = LowestFree(int(self.start), int(self.end), lambda v: v not in self.vips)
        self.owners: dict[int, str] = {}

    @property
    def capacity(self) -> int:
        """Ordinary addresses this pool can ever hand out at once."""
        span = range(int(self.start), int(self.end) + 1)
        excluded = len(self.reserved) + len(self.vips) + sum(1 for v in self._never if v in span)
        return len(span) - excluded

    def assign(self, owner: str, wanted: str | IPAddress | None = None) -> IPAddress:
        """The lowest free ordinary address (or ``wanted`` if it is free), recorded as ``owner``'s."""
        if wanted is not None:
            address = ipaddress.ip_address(wanted)
            if not self._ordinary.take_value(int(address)):
                raise NetworkModelError(self._why_not(address))
            value = int(address)
        else:
            taken = self._ordinary.take()
            if taken is None:
                raise PoolExhaustedError(
                    f"pool {self.name} ({self.start}-{self.end}) is exhausted: {len(self._ordinary.taken)} "
                    f"addresses assigned, {len(self.reserved)} reserved, {len(self.vips)} VIPs")
            value = taken
        self.owners[value] = owner
        return ipaddress.ip_address(value)

    def assign_vip(self, owner: str) -> IPAddress:
        value = self._vip.take()
        if value is None:
            raise PoolExhaustedError(f"pool {self.name}: all {len(self.vips)} VIPs are assigned")
        self.owners[value] = owner
        return ipaddress.ip_address(value)

    def release(self, address: str | IPAddress) -> None:
        value = int(ipaddress.ip_address(address))
        if value not in self.owners:
            raise NetworkModelError(f"pool {self.name}: {ipaddress.ip_address(value)} is not assigned")
        del self.owners[value]
        (self._vip if value in self.vips else self._ordinary).give_back(value)

    def assigned(self) -> Iterator[tuple[IPAddress, str]]:
        for value in sorted(self.owners):
            yield ipaddress.ip_address(value), self.owners[value]

    def _why_not(self, address: IPAddress) -> str:
        value = int(address)
        if address not in self.subnet or not int(self.start) <= value <= int(self.end):
            reason = f"outside its range {self.start}-{self.end}"
        elif value in self._never:
            reason = "the subnet's network, broadcast or gateway address"
        elif value in self.reserved:
            reason = "reserved"
        elif value in self.vips:
            reason = "a VIP (assigned only as a VIP)"
        else:
            reason = f"already assigned to {self.owners.get(value, '?')}"
        return f"pool {self.name}: {address} cannot be assigned: {reason}"
