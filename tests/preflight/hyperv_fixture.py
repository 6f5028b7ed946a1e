"""Hyper-V hosts' facts as the preflight PowerShell script writes them: ``ConvertTo-Json -Depth 6``
of ``Select-Object`` rows, with its quirks (specs/preflight.md, "ConvertTo-Json shapes"): a section
of one object is that object, not an array; enums are integers (SwitchType, TeamingMode,
VirtualMachineMigrationAuthenticationType, ClusterNetwork Role); RegistryValue is an array of
strings; Speed is bits per second; absent cmdlets (no cluster) give null.

``healthy(name, n)`` is node ``n`` of a two-node cluster that passes every rule; tests break one
fact at a time and fix it again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def healthy(name: str, n: int) -> dict[str, Any]:
    adapters = [  # name, description, index, speed, virtual
        ("Public", "Intel(R) Ethernet 1G #1", 3, 1_000_000_000),
        ("Cluster", "Mellanox ConnectX-4 #1", 4, 10_000_000_000),
        ("LiveMigration", "Mellanox ConnectX-4 #2", 5, 25_000_000_000),
        ("iSCSI", "Intel(R) Ethernet 10G #2", 6, 10_000_000_000),
        ("VMs", "Intel(R) Ethernet 10G #3", 7, 10_000_000_000),
    ]
    addresses = {"Public": (f"192.168.1.{10 + n}", 24), "Cluster": (f"10.0.1.{10 + n}", 24),
                  "LiveMigration": (f"10.0.3.{10 + n}", 24), "iSCSI": (f"10.0.2.{10 + n}", 24)}
    advanced = []
    for alias, *_ in adapters:
        advanced.append({"Name": alias, "RegistryKeyword": "*JumboPacket",
                         "RegistryValue": ["9014" if alias in ("LiveMigration", "iSCSI") else "1514"]})
        for keyword in ("*IPChecksumOffloadIPv4", "*TCPChecksumOffloadIPv4", "*UDPChecksumOffloadIPv4",
                        "*TCPChecksumOffloadIPv6", "*UDPChecksumOffloadIPv6"):
            advanced.append({"Name": alias, "RegistryKeyword": keyword, "RegistryValue": ["3"]})
    return {
        "Schema": "vhdkit-hyperv-facts/1",
        "ComputerName": name,
        "VMHost": {"ComputerName": name, "VirtualMachineMigrationEnabled": True,
                   "VirtualMachineMigrationAuthenticationType": 1},  # one object: no array (ConvertTo-Json)
        "VMMigrationNetwork": [{"Subnet": "10.0.3.0/24", "Priority": 1}, {"Subnet": "10.0.1.0/24", "Priority": 2}],
        "VMSwitch": {"Name": "Public", "SwitchType": 2, "NetAdapterInterfaceDescription": "Intel(R) Ethernet 10G #3"},
        "NetAdapter": [{"Name": a, "InterfaceDescription": d, "ifIndex": i, "Status": "Up",
                        "MacAddress": f"00-15-5D-0{n}-00-{i:02X}", "LinkSpeed": f"{s // 10**9} Gbps", "Speed": s,
                        "DriverVersion": "1.2.3.4", "Virtual": False} for a, d, i, s in adapters],
        "NetAdapterBinding": [{"Name": a, "ComponentID": c, "Enabled": a not in ("VMs",) or c == "vms_pp"}
                              for a, *_ in adapters for c in ("ms_msclient", "ms_server", "vms_pp")],
        "NetAdapterAdvancedProperty": advanced,
        "NetIPInterface": [{"InterfaceAlias": a, "InterfaceMetric": m, "NlMtu": 9000 if a in ("LiveMigration", "iSCSI")
                            else 1500} for a, m in (("Public", 10), ("Cluster", 20), ("LiveMigration", 30),
                                                    ("iSCSI", 40), ("VMs", 50))],
        "NetIPAddress": [{"InterfaceAlias": a, "IPAddress": ip, "PrefixLength": p} for a, (ip, p) in addresses.items()],
        "NetRoute": {"InterfaceAlias": "Public", "NextHop": "192.168.1.1", "RouteMetric": 0},
        "NetBios": [{"InterfaceIndex": i, "TcpipNetbiosOptions": 0 if a == "Public" else 2}
                    for a, _, i, _ in adapters if a != "VMs"],
        "Lsa": {"LmCompatibilityLevel": 3},
        "Msv1_0": {"RestrictSendingNTLMTraffic": 0, "RestrictReceivingNTLMTraffic": 0},
        "ClusterNetwork": [
            {"Name": "Public", "Address": "192.168.1.0", "AddressMask": "255.255.255.0", "Role": 3, "Metric": 70000},
            {"Name": "Cluster", "Address": "10.0.1.0", "AddressMask": "255.255.255.0", "Role": 1, "Metric": 30000},
            {"Name": "LiveMigration", "Address": "10.0.3.0", "AddressMask": "255.255.255.0", "Role": 1, "Metric": 29000},
            {"Name": "iSCSI", "Address": "10.0.2.0", "AddressMask": "255.255.255.0", "Role": 0, "Metric": 80000}],
        "MigrationExcludeNetworks": {"Value": "iSCSI"},
        "ClusterSharedVolume": [{"Name": "Cluster Disk 1"}],
        "NetLbfoTeam": None,
        "Processor": [{"Manufacturer": "GenuineIntel", "Name": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"}] * 2,
        "VM": [{"Name": "web01", "Id": "8e1a4c7e-0000-4000-8000-00000000000" + str(n), "Path": r"\\fs1\vms\web01"}],
        "VMProcessor": {"VMName": "web01", "CompatibilityForMigrationEnabled": False},
        "VMNetworkAdapter": {"VMName": "web01", "SwitchName": "Public", "MacAddress": "00155D010203"},
        "VMHardDiskDrive": [{"VMName": "web01", "Path": r"\\fs1\vms\web01\Virtual Hard Disks\web01.vhdx"}],
        "SmbServerConfiguration": {"EnableSMB1Protocol": False, "EnableSMB2Protocol": True,
                                   "RequireSecuritySignature": False, "EncryptData": False},
        "SmbConnection": {"ServerName": "fs1", "ShareName": "vms", "Dialect": "3.1.1", "ContinuouslyAvailable": True,
                          "Encrypted": False, "Signed": True},
        "TeamingSoftware": None,
    }


def write(folder: Path, doc: dict[str, Any], *, utf16: bool = False) -> Path:
    """As Out-File writes it: UTF-8 with a BOM (-Encoding utf8 in Windows PowerShell), or UTF-16LE."""
    path = folder / f"{doc.get('ComputerName', 'host')}.vhdkit-facts.json"
    text = json.dumps(doc, indent=4)
    path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le") if utf16 else b"\xef\xbb\xbf" + text.encode())
    return path


def rows(doc: dict[str, Any], section: str) -> list[dict[str, Any]]:
    """A section's rows as a list (to change them), whatever shape it has."""
    value = doc[section]
    if value is None:
        doc[section] = []
    elif not isinstance(value, list):
        doc[section] = [value]
    return doc[section]


def pair() -> tuple[dict[str, Any], dict[str, Any]]:
    return healthy("HV01", 1), healthy("HV02", 2)

