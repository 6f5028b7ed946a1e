"""A netvirt model for rule 13's tests: the provider network the hosts' PAs are on."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path


def netvirt_model(path: Path, pas: dict[str, str], encapsulation: str) -> Path:
    """One VM network with ``encapsulation`` over a provider /24 holding ``pas`` (host -> PA)."""
    first = min(ipaddress.ip_address(pa) for pa in pas.values())
    subnet = ipaddress.ip_network(f"{first}/24", strict=False)
    path.write_text(json.dumps({
        "logical_networks": [{"name": "Provider", "pa_pool": {"subnet": str(subnet), "start": str(first),
                                                              "end": str(subnet[100])}}],
        "hosts": [{"name": host, "logical_network": "Provider", "pa": pa} for host, pa in pas.items()],
        "vm_networks": [{"name": "Contoso", "logical_network": "Provider", "encapsulation": encapsulation,
                         "subnets": [{"name": "front", "subnet": "10.1.1.0/24", "vsid": 5001}]}]}))
    return path
