from __future__ import annotations

from pathlib import Path

import pytest

from vhdkit import netvirt

MODEL = Path(__file__).with_name("model.json")


@pytest.fixture
def fabric() -> netvirt.Fabric:
    """Two tenants on two hosts. Contoso (NVGRE): front 10.1.1.0/24 (VSID 5001), back 10.1.2.0/24
    (5002), a gateway VM with a customer route for 172.16.0.0/12. Fabrikam (VXLAN): web
    10.1.1.0/24 (6001, the same CAs as Contoso's front) and data 10.1.3.0/24 (VSID assigned)."""
    return netvirt.load(MODEL)
