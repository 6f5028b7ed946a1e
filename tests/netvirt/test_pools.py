"""Static IP pools and the VSID space: what is handed out, in what order, and when it runs out."""

from __future__ import annotations

import ipaddress

import pytest

from vhdkit.errors import NetworkModelError, PoolExhaustedError
from vhdkit.netvirt import VSID_MAX, VSID_MIN, StaticIPPool, VsidPool


def acceptance_pool() -> StaticIPPool:
    return StaticIPPool("tenant", "10.1.1.0/24", "10.1.1.10", "10.1.1.200", reserved=["10.1.1.50-10.1.1.59"],
                        vips=["10.1.1.100-10.1.1.109"], gateways=["10.1.1.1"])


def test_a_range_of_191_with_10_reserved_and_10_vips_gives_171_then_a_clear_error():
    pool = acceptance_pool()
    assert pool.capacity == 171
    got = [pool.assign(f"vm{i}") for i in range(171)]
    assert len(set(got)) == 171
    excluded = {ipaddress.ip_address(f"10.1.1.{n}") for n in [*range(50, 60), *range(100, 110)]}
    assert not excluded & set(got)
    assert min(got) == ipaddress.ip_address("10.1.1.10") and max(got) == ipaddress.ip_address("10.1.1.200")
    assert got == sorted(got)  # lowest free first
    with pytest.raises(PoolExhaustedError, match=r"tenant .*exhausted: 171 addresses assigned, 10 reserved, 10 VIPs"):
        pool.assign("one too many")
    pool.release("10.1.1.77")
    assert pool.assign("again") == ipaddress.ip_address("10.1.1.77")
    with pytest.raises(PoolExhaustedError):
        pool.assign("still too many")


def test_vips_come_only_from_the_vip_set_and_release_reuses_the_lowest():
    pool = acceptance_pool()
    vips = [pool.assign_vip(f"lb{i}") for i in range(10)]
    assert vips == [ipaddress.ip_address(f"10.1.1.{n}") for n in range(100, 110)]
    with pytest.raises(PoolExhaustedError, match="all 10 VIPs"):
        pool.assign_vip("lb10")
    first, second = pool.assign("a"), pool.assign("b")
    pool.release(second)
    pool.release(first)
    assert pool.assign("c") == first  # the lowest given back comes first


def test_named_addresses_are_checked():
    pool = acceptance_pool()
    assert pool.assign("db", "10.1.1.150") == ipaddress.ip_address("10.1.1.150")
    for address, why in [("10.1.1.150", "already assigned to db"), ("10.1.1.55", "reserved"),
                         ("10.1.1.105", "a VIP"), ("10.1.1.5", "outside its range"),
                         ("10.1.1.201", "outside its range")]:
        with pytest.raises(NetworkModelError, match=why):
            pool.assign("x", address)
    assert pool.assign("next") == ipaddress.ip_address("10.1.1.10")  # named ones do not move the lowest
    with pytest.raises(NetworkModelError, match="not assigned"):
        pool.release("10.1.1.11")


def test_the_network_broadcast_and_gateway_are_never_assigned():
    pool = StaticIPPool("small", "10.9.0.0/29", gateways=["10.9.0.1"])
    got = []
    while True:
        try:
            got.append(str(pool.assign("vm")))
        except PoolExhaustedError:
            break
    assert got == [f"10.9.0.{n}" for n in range(2, 7)] and pool.capacity == 5


@pytest.mark.parametrize("kwargs, message", [
    (dict(start="10.1.1.200", end="10.1.1.10"), "ends before it starts"),
    (dict(start="10.2.0.1"), "outside the subnet"),
    (dict(reserved=["10.1.1.5"], start="10.1.1.10"), "must lie in the range"),
    (dict(reserved=["10.1.1.20"], vips=["10.1.1.20"]), "both reserved and a VIP"),
    (dict(reserved=["10.1.1.30-10.1.1.20"]), "ends before it starts"),
    (dict(vips=["banana"]), "not an IP address"),
])
def test_bad_pools_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(NetworkModelError, match=message):
        StaticIPPool("p", "10.1.1.0/24", **kwargs)


def test_ipv6_pools_work_without_enumerating_the_subnet():
    pool = StaticIPPool("v6", "fd00:1::/64", gateways=["fd00:1::1"])
    assert [str(pool.assign("vm")) for _ in range(3)] == ["fd00:1::2", "fd00:1::3", "fd00:1::4"]


def test_vsids_are_unique_in_range_and_reused():
    vsids = VsidPool()
    assert vsids.assign() == VSID_MIN and vsids.assign(5001) == 5001 and vsids.assign() == VSID_MIN + 1
    with pytest.raises(NetworkModelError, match="already in use"):
        vsids.assign(5001)
    for bad in (VSID_MIN - 1, VSID_MAX + 1, 0xFFFFFF):
        with pytest.raises(NetworkModelError, match="out of range"):
            vsids.assign(bad)
    vsids.release(VSID_MIN)
    assert vsids.assign() == VSID_MIN
