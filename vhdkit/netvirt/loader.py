"""Load a model from JSON or TOML (the same structure), and write one back.

    {"logical_networks": [{"name": "Provider", "pa_pool": {"subnet": "192.0.2.0/24",
                           "start": "192.0.2.10", "end": "192.0.2.250"},
                           "sites": [{"name": "Site1", "host_groups": ["All Hosts"],
                                      "subnets": [{"subnet": "192.0.2.0/24", "vlan": 0}]}]}],
     "hosts": [{"name": "host1", "logical_network": "Provider", "pa": "192.0.2.11"}],
     "vm_networks": [{"name": "Contoso", "logical_network": "Provider", "encapsulation": "nvgre",
                      "routing_domain": "GUID (optional)",
                      "subnets": [{"name": "front", "subnet": "10.1.1.0/24", "vsid": 5001,
                                   "start": "10.1.1.10", "end": "10.1.1.200",
                                   "reserved": ["10.1.1.50-10.1.1.59"], "vips": ["10.1.1.100"]}],
                      "routes": [{"prefix": "0.0.0.0/0", "next_hop": "10.1.1.254", "metric": 10}]}],
     "vms": [{"name": "web", "host": "host1",
              "nics": [{"network": "Contoso", "subnet": "front", "ca": "10.1.1.12 (optional)"}]}]}

Optional values (PA, VSID, CA, MAC, routing domain GUID) are assigned deterministically, so a
model loads the same way every time.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any

from ..errors import NetworkModelError
from .model import Fabric, NetworkSite, format_mac
from .pools import StaticIPPool


def load(path: str | os.PathLike[str]) -> Fabric:
    text_path = os.fspath(path)
    try:
        with open(text_path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise NetworkModelError(f"cannot read the model {text_path}: {e.strerror}") from e
    if text_path.endswith(".toml"):
        try:
            import tomllib
        except ImportError as e:  # Python < 3.11
            raise NetworkModelError("TOML models need Python 3.11 or later (tomllib); use JSON") from e
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise NetworkModelError(f"{text_path} is not valid TOML: {e}") from e
    else:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise NetworkModelError(f"{text_path} is not valid JSON: {e}") from e
    return from_dict(data)


def from_dict(data: Any) -> Fabric:
    if not isinstance(data, dict):
        raise NetworkModelError("a model is an object with logical_networks, hosts, vm_networks and vms")
    fabric = Fabric()
    try:
        for ln in data.get("logical_networks", []):
            pool = ln["pa_pool"]
            sites = [NetworkSite(s["name"], list(s.get("host_groups", ["All Hosts"])),
                                 [(ipaddress.ip_network(n["subnet"]), int(n.get("vlan", 0))) for n in s.get("subnets", [])])
                     for s in ln.get("sites", [])]
            fabric.add_logical_network(
                ln["name"], StaticIPPool(f"{ln['name']} PA", pool["subnet"], pool.get("start"), pool.get("end"),
                                         reserved=pool.get("reserved", ()), gateways=pool.get("gateways", ())),
                sites, bool(ln.get("network_virtualization", True)))
        for host in sorted(data.get("hosts", []), key=lambda host: "pa" not in host):  # named PAs first
            fabric.add_host(host["name"], host["logical_network"], host.get("pa"), host.get("host_group", "All Hosts"))
        for net in data.get("vm_networks", []):
            fabric.add_vm_network(net["name"], net["logical_network"], routing_domain=net.get("routing_domain"),
                                  encapsulation=net.get("encapsulation", "nvgre"))
        subnets = [(net["name"], sub) for net in data.get("vm_networks", []) for sub in net.get("subnets", [])]
        # subnets that name their VSID first, so an assigned one never takes a VSID named later
        for network, sub in sorted(subnets, key=lambda item: item[1].get("vsid") is None):
            fabric.add_vm_subnet(network, sub["name"], sub["subnet"], vsid=sub.get("vsid"), start=sub.get("start"),
                                 end=sub.get("end"), reserved=sub.get("reserved", ()), vips=sub.get("vips", ()),
                                 dns_servers=sub.get("dns_servers", ()))
        for net in data.get("vm_networks", []):  # routes name gateway VMs' addresses: checked when used
            for route in net.get("routes", []):
                fabric.add_route(net["name"], route["prefix"], route["next_hop"], int(route.get("metric", 256)))
        # VMs whose vNICs name their CAs first, so an assigned CA never takes one named later
        for vm in sorted(data.get("vms", []), key=lambda vm: not all("ca" in n for n in vm.get("nics", []))):
            fabric.add_vm(vm["name"], vm["host"], vm.get("nics", []))
    except KeyError as e:
        raise NetworkModelError(f"the model lacks {e.args[0]!r} in one of its entries") from e
    except (TypeError, ValueError) as e:
        raise NetworkModelError(f"the model has a malformed value: {e}") from e
    return fabric


def to_dict(fabric: Fabric) -> dict:
    """The model with every assigned value written out (a later load gives the same fabric)."""
    return {
        "logical_networks": [
            {"name": ln.name, "network_virtualization": ln.network_virtualization,
             "pa_pool": {"subnet": str(ln.pa_pool.subnet), "start": str(ln.pa_pool.start), "end": str(ln.pa_pool.end),
                         "gateways": [str(g) for g in ln.pa_pool.gateways]},
             "sites": [{"name": s.name, "host_groups": s.host_groups,
                        "subnets": [{"subnet": str(n), "vlan": v} for n, v in s.subnets]} for s in ln.sites]}
            for ln in fabric.logical_networks.values()],
        "hosts": [{"name": h.name, "logical_network": h.logical_network.name, "pa": str(h.pa),
                   "host_group": h.host_group} for h in fabric.hosts.values()],
        "vm_networks": [
            {"name": n.name, "logical_network": n.logical_network.name, "routing_domain": str(n.routing_domain),
             "encapsulation": n.encapsulation,
             "subnets": [{"name": s.name, "subnet": str(s.prefix), "vsid": s.vsid, "start": str(s.pool.start),
                          "end": str(s.pool.end), "reserved": _ranges(s.pool.reserved), "vips": _ranges(s.pool.vips)}
                         for s in n.subnets.values()],
             "routes": [{"prefix": str(r.prefix), "next_hop": str(r.next_hop), "metric": r.metric} for r in n.routes]}
            for n in fabric.vm_networks.values()],
        "vms": [{"name": vm.name, "host": vm.host.name,
                 "nics": [{"name": nic.name, "network": nic.subnet.network.name, "subnet": nic.subnet.name,
                           "ca": str(nic.ca), "mac": format_mac(nic.mac), "gateway": nic.gateway} for nic in vm.nics]}
                for vm in fabric.vms.values()],
    }


def _ranges(values: set[int]) -> list[str]:
    out, run = [], []
    for v in sorted(values):
        if run and v != run[-1] + 1:
            out.append(_range_text(run))
            run = []
        run.append(v)
    if run:
        out.append(_range_text(run))
    return out


def _range_text(run: list[int]) -> str:
    first, last = ipaddress.ip_address(run[0]), ipaddress.ip_address(run[-1])
    return str(first) if first == last else f"{first}-{last}"
