"""The forwarding decision and lookup records for a two-tenant model with overlapping CA spaces
(tests/netvirt/model.json), judged against HNV's rules (specs/netvirt.md), written
out here by hand for every pair of vNICs."""

from __future__ import annotations

import json

import pytest

from vhdkit import netvirt
from vhdkit.errors import NetworkModelError

# Where each VM is (by the model): tenant, VSID, host.
PLACES = {
    "contoso-web": ("Contoso", 5001, "host1"), "contoso-app": ("Contoso", 5001, "host2"),
    "contoso-sql": ("Contoso", 5002, "host2"), "contoso-gw": ("Contoso", 5001, "host1"),
    "fabrikam-web": ("Fabrikam", 6001, "host1"), "fabrikam-app": ("Fabrikam", 6001, "host2"),
    "fabrikam-sql": ("Fabrikam", 4096, "host1"),
}
# Across tenants, a destination CA is read in the sender's routing domain: the same address in
# the sender's own network is a different VM; an address it does not have is dropped.
ACROSS = {
    ("contoso-web", "fabrikam-app"): ("switch", "contoso-app"),  # 10.1.1.12 is contoso-app in Contoso
    ("contoso-app", "fabrikam-web"): ("switch", "contoso-web"),
    ("contoso-sql", "fabrikam-web"): ("route", "contoso-web"),
    ("contoso-sql", "fabrikam-app"): ("route", "contoso-app"),
    ("contoso-gw", "fabrikam-web"): ("switch", "contoso-web"),
    ("contoso-gw", "fabrikam-app"): ("switch", "contoso-app"),
    ("fabrikam-web", "contoso-app"): ("switch", "fabrikam-app"),
    ("fabrikam-app", "contoso-web"): ("switch", "fabrikam-web"),
    ("fabrikam-sql", "contoso-web"): ("route", "fabrikam-web"),
    ("fabrikam-sql", "contoso-app"): ("route", "fabrikam-app"),
}


def expected(src: str, dst: str) -> tuple[str, str | None]:
    s_tenant, s_vsid, _ = PLACES[src]
    d_tenant, d_vsid, _ = PLACES[dst]
    if s_tenant == d_tenant:
        return ("switch" if s_vsid == d_vsid else "route"), dst
    return ACROSS.get((src, dst), ("drop", None))  # the rest: 10.1.2.10 / 10.1.3.10 / 10.1.1.250 exist in one tenant only


def test_every_pair_of_vnics_gets_the_verdict_the_rules_give(fabric):
    pairs = 0
    for src in PLACES:
        for dst in PLACES:
            if src == dst:
                continue
            source, target = fabric.find_nic(src), fabric.find_nic(dst)
            verdict = netvirt.decide(fabric, source, target.ca)
            action, to = expected(src, dst)
            where = f"{src} -> {dst} ({target.ca}): {verdict.reason}"
            assert verdict.action == action, where
            assert (verdict.destination.vm.name if verdict.destination else None) == to, where
            if to is not None:
                # the frame carries the receiver's VSID; PAs only between hosts
                assert verdict.inner_vsid == PLACES[to][1], where
                hosts = (PLACES[src][2], PLACES[to][2])
                pas = {h: fabric.hosts[h].pa for h in hosts}
                assert verdict.outer == (None if hosts[0] == hosts[1] else (pas[hosts[0]], pas[hosts[1]])), where
                assert PLACES[to][0] == PLACES[src][0], "never delivered into another routing domain"
            pairs += 1
    assert pairs == 42


def test_routed_traffic_uses_the_lowest_address_as_gateway(fabric):
    verdict = netvirt.decide(fabric, fabric.find_nic("contoso-web"), "10.1.2.10")
    assert verdict.action == "route" and "(10.1.1.1)" in verdict.reason
    assert [str(s.gateway) for s in fabric.vm_networks["Contoso"].subnets.values()] == ["10.1.1.1", "10.1.2.1"]


def test_other_networks_are_reached_only_through_a_gateway_route(fabric):
    web = fabric.find_nic("contoso-web")
    via = netvirt.decide(fabric, web, "172.16.40.1")
    assert via.action == "gateway" and via.destination.vm.name == "contoso-gw" and via.outer is None
    assert netvirt.decide(fabric, web, "192.168.1.1").action == "drop"  # no route covers it
    dropped = netvirt.decide(fabric, fabric.find_nic("fabrikam-web"), "172.16.40.1")  # Fabrikam has no route
    assert dropped.action == "drop" and "Fabrikam" in dropped.reason


def test_a_spoofed_source_is_dropped(fabric):
    web = fabric.find_nic("contoso-web")
    assert netvirt.decide(fabric, web, "10.1.1.12", source_ip="10.1.1.99").action == "drop"
    assert netvirt.decide(fabric, web, "10.1.1.12", source_ip="10.1.1.12").action == "drop"  # a neighbour's CA
    other_mac = fabric.find_nic("contoso-app").mac
    spoofed = netvirt.decide(fabric, web, "10.1.1.12", source_mac=other_mac)
    assert spoofed.action == "drop" and "spoofed source MAC" in spoofed.reason
    assert netvirt.decide(fabric, web, "10.1.1.12", source_ip="10.1.1.11", source_mac=web.mac).action == "switch"


def test_the_lookup_records_are_those_hyperv_holds(fabric):
    table = netvirt.lookup_table(fabric)
    assert len(table) == 7
    record = table.lookup(6001, "10.1.1.11")
    web = fabric.find_nic("fabrikam-web")
    assert (record.vm_name, record.mac, record.pa, record.rule) == ("fabrikam-web", web.mac, fabric.hosts["host1"].pa,
                                                                    "TranslationMethodEncap")
    assert record.customer_id == f"{{{fabric.vm_networks['Fabrikam'].routing_domain}}}"
    assert table.lookup(5001, "10.1.1.11").vm_name == "contoso-web"  # the same CA, the other tenant
    assert table.lookup(5002, "10.1.1.11") is None
    assert table.lookup(5001, "10.1.1.250").type == "GatewayWildcard"
    line = record.powershell()
    assert line.startswith('New-NetVirtualizationLookupRecord -CustomerAddress "10.1.1.11" -VirtualSubnetID "6001"')
    assert f'-MACAddress "{web.mac:012X}"' in line and '-Rule "TranslationMethodEncap"' in line


def test_moving_a_vm_changes_only_its_pa_everywhere(fabric):
    before = {(r.vsid, r.ca): r for r in netvirt.lookup_table(fabric)}
    sql = fabric.find_nic("contoso-sql")
    ca, mac = sql.ca, sql.mac
    fabric.move_vm("contoso-sql", "host1")
    after = {(r.vsid, r.ca): r for r in netvirt.lookup_table(fabric)}
    assert after.keys() == before.keys()
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {(5002, ca)}
    assert after[(5002, ca)] == before[(5002, ca)]._replace(pa=fabric.hosts["host1"].pa)
    assert (sql.ca, sql.mac) == (ca, mac)
    # and the decision follows: contoso-web and contoso-sql now share host1, nothing is encapsulated
    assert netvirt.decide(fabric, fabric.find_nic("contoso-web"), ca).outer is None


def test_a_model_round_trips_through_its_dict(fabric):
    again = netvirt.from_dict(json.loads(json.dumps(netvirt.to_dict(fabric))))
    assert list(netvirt.lookup_table(again)) == list(netvirt.lookup_table(fabric))
    assert netvirt.to_dict(again) == netvirt.to_dict(fabric)


def test_overlapping_subnets_in_one_routing_domain_are_refused(fabric):
    with pytest.raises(NetworkModelError, match="overlaps front"):
        fabric.add_vm_subnet("Contoso", "more", "10.1.1.128/25")
    fabric.add_vm_subnet("Fabrikam", "back", "10.1.2.0/24")  # Contoso's back prefix: fine in another domain
    with pytest.raises(NetworkModelError, match="VSID 5001 is already in use"):
        fabric.add_vm_subnet("Fabrikam", "dup", "10.9.0.0/24", vsid=5001)


@pytest.mark.parametrize("change, message", [
    (lambda m: m["vms"][0].update(host="host9"), "no host named 'host9'"),
    (lambda m: m["vms"][1]["nics"][0].update(ca="10.1.1.11"), "already assigned to contoso-web"),
    (lambda m: m["vm_networks"][0]["subnets"][0].update(vsid=99), "VSID 99 is out of range"),
    (lambda m: m["vm_networks"][1].update(encapsulation="geneve"), "encapsulation must be one of"),
    (lambda m: m["hosts"][0].pop("name"), "lacks 'name'"),
    (lambda m: m["vms"][0]["nics"][0].update(mac="00:15:5d:00:00:zz"), "not a MAC address"),
])
def test_a_bad_model_gets_a_clear_error(change, message):
    model = json.loads(netvirt_model_text())
    change(model)
    with pytest.raises(NetworkModelError, match=message):
        netvirt.from_dict(model)


def test_a_failed_vm_gives_back_what_it_took(fabric):
    pool = fabric.vm_networks["Contoso"].subnets["front"].pool
    before = dict(pool.owners)
    with pytest.raises(NetworkModelError):
        fabric.add_vm("two-nics", "host1", [{"network": "Contoso", "subnet": "front"},
                                             {"network": "Contoso", "subnet": "nowhere"}])
    assert pool.owners == before and "two-nics" not in fabric.vms


def netvirt_model_text() -> str:
    from .conftest import MODEL

    return MODEL.read_text()

