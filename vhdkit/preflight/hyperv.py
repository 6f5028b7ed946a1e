"""Hyper-V hosts: the PowerShell script an administrator runs on each, and the reader of the JSON
it writes (specs/preflight.md, "Hyper-V export").

``SOURCES`` is the one list of what is asked of Windows: each section's PowerShell expression and
the properties the reader takes from its objects. The script is generated from it and the reader
reads by it, so the two cannot disagree (tests/preflight/test_hyperv.py holds them to it).

``ConvertTo-Json`` has quirks the reader accepts, and nothing else: a pipeline of one object is
written as that object, not a one-element array; enums are written as integers; below its
``-Depth`` nested objects become their type name as a string (the script uses -Depth 6 and
selects flat properties, so that never reaches a value the reader needs).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..errors import PreflightError
from .facts import OFFLOADS, MAX_ITEMS, MAX_TEXT, Adapter, ClusterNetwork, HostFacts, Share, Switch, Team, Vm, VmNic

SCHEMA = "vhdkit-hyperv-facts/1"

# section -> (PowerShell expression, properties selected from its objects)
SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "VMHost": ("Get-VMHost",
               ("ComputerName", "VirtualMachineMigrationEnabled", "VirtualMachineMigrationAuthenticationType")),
    "VMMigrationNetwork": ("Get-VMMigrationNetwork", ("Subnet", "Priority")),
    "VMSwitch": ("Get-VMSwitch", ("Name", "SwitchType", "NetAdapterInterfaceDescription")),
    "NetAdapter": ("Get-NetAdapter", ("Name", "InterfaceDescription", "ifIndex", "Status", "MacAddress",
                                      "LinkSpeed", "Speed", "DriverVersion", "Virtual")),
    "NetAdapterBinding": ("Get-NetAdapterBinding -ComponentID ms_msclient,ms_server,vms_pp",
                          ("Name", "ComponentID", "Enabled")),
    "NetAdapterAdvancedProperty": (
        "Get-NetAdapterAdvancedProperty -RegistryKeyword '*JumboPacket','*IPChecksumOffloadIPv4',"
        "'*TCPChecksumOffloadIPv4','*UDPChecksumOffloadIPv4','*TCPChecksumOffloadIPv6','*UDPChecksumOffloadIPv6',"
        "'ReceiveBufferSize','SendBufferSize' -ErrorAction SilentlyContinue",
        ("Name", "RegistryKeyword", "RegistryValue")),
    "NetIPInterface": ("Get-NetIPInterface -AddressFamily IPv4", ("InterfaceAlias", "InterfaceMetric", "NlMtu")),
    "NetIPAddress": ("Get-NetIPAddress -AddressFamily IPv4", ("InterfaceAlias", "IPAddress", "PrefixLength")),
    "NetRoute": ("Get-NetRoute -DestinationPrefix 0.0.0.0/0 -ErrorAction SilentlyContinue",
                 ("InterfaceAlias", "NextHop", "RouteMetric")),
    "NetBios": ("Get-CimInstance Win32_NetworkAdapterConfiguration -Filter 'IPEnabled=True'",
                ("InterfaceIndex", "TcpipNetbiosOptions")),
    "Lsa": ("Get-ItemProperty HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Lsa -ErrorAction SilentlyContinue",
            ("LmCompatibilityLevel",)),
    "Msv1_0": ("Get-ItemProperty HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Lsa\\MSV1_0 -ErrorAction SilentlyContinue",
               ("RestrictSendingNTLMTraffic", "RestrictReceivingNTLMTraffic")),
    "ClusterNetwork": ("Get-ClusterNetwork -ErrorAction SilentlyContinue", ("Name", "Address", "AddressMask",
                                                                              "Role", "Metric")),
    "MigrationExcludeNetworks": (
        "(Get-ClusterResourceType -Name 'Virtual Machine' -ErrorAction SilentlyContinue | Get-ClusterParameter "
        "-Name MigrationExcludeNetworks -ErrorAction SilentlyContinue)", ("Value",)),
    "ClusterSharedVolume": ("Get-ClusterSharedVolume -ErrorAction SilentlyContinue", ("Name",)),
    "NetLbfoTeam": ("Get-NetLbfoTeam -ErrorAction SilentlyContinue", ("Name", "TeamingMode", "Members")),
    "Processor": ("Get-CimInstance Win32_Processor", ("Manufacturer", "Name")),
    "VM": ("Get-VM", ("Name", "Id", "Path")),
    "VMProcessor": ("Get-VM | Get-VMProcessor", ("VMName", "CompatibilityForMigrationEnabled")),
    "VMNetworkAdapter": ("Get-VM | Get-VMNetworkAdapter", ("VMName", "SwitchName", "MacAddress")),
    "VMHardDiskDrive": ("Get-VM | Get-VMHardDiskDrive", ("VMName", "Path")),
    "SmbServerConfiguration": ("Get-SmbServerConfiguration", ("EnableSMB1Protocol", "EnableSMB2Protocol",
                                                               "RequireSecuritySignature", "EncryptData")),
    "SmbConnection": ("Get-SmbConnection -ErrorAction SilentlyContinue",
                      ("ServerName", "ShareName", "Dialect", "ContinuouslyAvailable", "Encrypted", "Signed")),
    "TeamingSoftware": (
        "Get-ItemProperty HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\* -ErrorAction "
        "SilentlyContinue | Where-Object { $_.DisplayName -match 'Network Configuration Utility|Teaming|NCU' }",
        ("DisplayName", "DisplayVersion")),
}

# *ChecksumOffload values (Windows' standardized keywords): 0 disabled, 1 Tx, 2 Rx, 3 Rx & Tx
_OFFLOAD_KEYWORDS = {"*IPChecksumOffloadIPv4": "ipv4", "*TCPChecksumOffloadIPv4": "tcp_ipv4",
                     "*UDPChecksumOffloadIPv4": "udp_ipv4", "*TCPChecksumOffloadIPv6": "tcp_ipv6",
                     "*UDPChecksumOffloadIPv6": "udp_ipv6"}
assert set(_OFFLOAD_KEYWORDS.values()) == set(OFFLOADS)


def powershell_script() -> str:
    """The script: run it on each Hyper-V host (as an administrator); it writes
    ``<computer>.vhdkit-facts.json`` in the current folder, for ``vhdkit preflight``."""
    lines = [
        "# vhdkit preflight: gather this Hyper-V host's facts for `vhdkit preflight` (read-only).",
        "$ErrorActionPreference = 'Continue'",
        "$facts = [ordered]@{ Schema = '" + SCHEMA + "'; ComputerName = $env:COMPUTERNAME }",
    ]
    for section, (expression, properties) in SOURCES.items():
        selected = ", ".join(properties)
        lines.append(f"$facts['{section}'] = @({expression} | Select-Object {selected})")
    lines += [
        "$out = Join-Path (Get-Location) ($env:COMPUTERNAME + '.vhdkit-facts.json')",
        "$facts | ConvertTo-Json -Depth 6 | Out-File -Encoding utf8 $out",
        "Write-Host \"wrote $out\"",
    ]
    return "\r\n".join(lines) + "\r\n"


# -- reading ---------------------------------------------------------------------------------------

class _Reader:
    def __init__(self, doc: dict[str, Any], name: str) -> None:
        self.doc, self.name = doc, name

    def fail(self, where: str, what: str) -> PreflightError:
        return PreflightError(f"{self.name}: {where}: {what}")

    def rows(self, section: str) -> list[dict[str, Any]]:
        """A section's objects: ConvertTo-Json writes one object without its array, none as null."""
        if section not in SOURCES:
            raise KeyError(section)
        value = self.doc.get(section)
        if value is None:
            return []
        rows = value if isinstance(value, list) else [value]
        if len(rows) > MAX_ITEMS:
            raise self.fail(section, f"{len(rows)} objects (at most {MAX_ITEMS})")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise self.fail(f"{section}[{i}]", f"expected an object, found {type(row).__name__}")
            unknown = set(row) - set(SOURCES[section][1])
            if unknown:
                raise self.fail(f"{section}[{i}]", f"{sorted(unknown)[0]} is not a property the script selects")
        return rows

    def text(self, row: dict[str, Any], key: str, where: str, default: str = "") -> str:
        value = row.get(key)
        if value is None:
            return default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", f"expected text, found {type(value).__name__}")
        if len(value) > MAX_TEXT:
            raise self.fail(f"{where}.{key}", f"longer than {MAX_TEXT} characters")
        return value

    def number(self, row: dict[str, Any], key: str, where: str) -> int | None:
        value = row.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.fail(f"{where}.{key}", f"expected a number, found {type(value).__name__}")
        try:
            number = int(value)
        except ValueError:
            raise self.fail(f"{where}.{key}", f"expected a number, found {value[:40]!r}") from None
        if not -(2**63) <= number < 2**63:
            raise self.fail(f"{where}.{key}", "out of range")
        return number

    def flag(self, row: dict[str, Any], key: str, where: str) -> bool | None:
        value = row.get(key)
        if value is None or isinstance(value, bool):
            return value
        raise self.fail(f"{where}.{key}", f"expected true or false, found {type(value).__name__}")

    def names(self, row: dict[str, Any], key: str, where: str) -> list[str]:
        value = row.get(key)
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        if len(items) > MAX_ITEMS:
            raise self.fail(f"{where}.{key}", "too many items")
        return [self.text({key: v}, key, where) for v in items]


_MIGRATION_AUTH = {0: "CredSSP", 1: "Kerberos", "CredSSP": "CredSSP", "Kerberos": "Kerberos"}
_TEAMING_MODES = {0: "Static", 1: "SwitchIndependent", 2: "Lacp"}


def read_export(doc: dict[str, Any], name: str) -> HostFacts:
    """HostFacts from the script's JSON (already parsed, nesting bounded: facts.parse_json)."""
    r = _Reader(doc, name)
    unknown = set(doc) - set(SOURCES) - {"Schema", "ComputerName"}
    if unknown:
        raise r.fail(sorted(unknown)[0], "not a section the vhdkit script writes")
    host = r.text(doc, "ComputerName", "ComputerName")
    if not host:
        raise r.fail("ComputerName", "missing")
    facts = HostFacts(host=host, kind="hyperv")
    for row in r.rows("VMHost")[:1]:
        facts.migration_enabled = r.flag(row, "VirtualMachineMigrationEnabled", "VMHost")
        auth = row.get("VirtualMachineMigrationAuthenticationType")
        if auth not in _MIGRATION_AUTH and auth is not None:
            raise r.fail("VMHost.VirtualMachineMigrationAuthenticationType", f"unknown value {str(auth)[:40]!r}")
        facts.migration_authentication = _MIGRATION_AUTH.get(auth, "")  # type: ignore[arg-type]
    ordered = sorted(r.rows("VMMigrationNetwork"), key=lambda row: r.number(row, "Priority", "VMMigrationNetwork") or 0)
    facts.migration_networks = [r.text(row, "Subnet", "VMMigrationNetwork") for row in ordered]
    _adapters(r, facts)
    for i, row in enumerate(r.rows("VMSwitch")):
        where = f"VMSwitch[{i}]"
        uplink = r.text(row, "NetAdapterInterfaceDescription", where)
        uplinks = [a.name for a in facts.adapters if uplink and a.driver == uplink]
        facts.switches.append(Switch(r.text(row, "Name", where), uplinks, str(row.get("SwitchType", ""))))
        for a in facts.adapters:
            if a.name in uplinks:
                a.switch = facts.switches[-1].name
    for i, row in enumerate(r.rows("NetLbfoTeam")):
        where = f"NetLbfoTeam[{i}]"
        mode = row.get("TeamingMode")
        team = Team(r.text(row, "Name", where), _TEAMING_MODES.get(mode, str(mode)),  # type: ignore[arg-type]
                    r.names(row, "Members", where))
        facts.teams.append(team)
        for a in facts.adapters:
            if a.name in team.members:
                a.team = team.name
    for row in r.rows("Processor")[:1]:
        facts.cpu_vendor = r.text(row, "Manufacturer", "Processor")
        facts.cpu_model = r.text(row, "Name", "Processor")
    for row in r.rows("Lsa")[:1]:
        facts.lm_compatibility_level = r.number(row, "LmCompatibilityLevel", "Lsa")
    for row in r.rows("Msv1_0")[:1]:
        facts.restrict_sending_ntlm = r.number(row, "RestrictSendingNTLMTraffic", "Msv1_0")
        facts.restrict_receiving_ntlm = r.number(row, "RestrictReceivingNTLMTraffic", "Msv1_0")
    excluded = {v for row in r.rows("MigrationExcludeNetworks") for v in
                r.text(row, "Value", "MigrationExcludeNetworks").replace(",", ";").split(";") if v}
    for i, row in enumerate(r.rows("ClusterNetwork")):
        where = f"ClusterNetwork[{i}]"
        address, mask = r.text(row, "Address", where), r.text(row, "AddressMask", where)
        facts.cluster_networks.append(ClusterNetwork(
            r.text(row, "Name", where), _subnet(r, address, mask, where), r.number(row, "Role", where) or 0,
            r.number(row, "Metric", where), r.text(row, "Name", where) in excluded))
    facts.csv = bool(r.rows("ClusterSharedVolume"))
    for i, row in enumerate(r.rows("TeamingSoftware")):
        facts.teaming_software[r.text(row, "DisplayName", f"TeamingSoftware[{i}]")] = \
            r.text(row, "DisplayVersion", f"TeamingSoftware[{i}]")
    _vms(r, facts)
    for i, row in enumerate(r.rows("SmbConnection")):
        where = f"SmbConnection[{i}]"
        url = f"smb://{r.text(row, 'ServerName', where)}/{r.text(row, 'ShareName', where)}"
        facts.shares.append(Share(url, reachable=True, dialect=r.text(row, "Dialect", where),
                                  signing=r.flag(row, "Signed", where), encryption=r.flag(row, "Encrypted", where),
                                  continuously_available=r.flag(row, "ContinuouslyAvailable", where)))
    return facts


def _subnet(r: _Reader, address: str, mask: str, where: str) -> str:
    try:
        return str(ipaddress.ip_network(f"{address}/{mask}", strict=False)) if mask else address
    except ValueError:
        raise r.fail(f"{where}.Address", f"{address}/{mask} is not a network") from None


def _adapters(r: _Reader, facts: HostFacts) -> None:
    by_name: dict[str, Adapter] = {}
    by_index: dict[int, Adapter] = {}
    for i, row in enumerate(r.rows("NetAdapter")):
        where = f"NetAdapter[{i}]"
        status = row.get("Status")
        a = Adapter(name=r.text(row, "Name", where), mac=r.text(row, "MacAddress", where),
                    up=status in ("Up", 2) if status is not None else True,
                    speed_mbps=(r.number(row, "Speed", where) or 0) // 1_000_000 or None,
                    driver=r.text(row, "InterfaceDescription", where),
                    driver_version=r.text(row, "DriverVersion", where), virtual=bool(r.flag(row, "Virtual", where)))
        by_name[a.name] = a
        index = r.number(row, "ifIndex", where)
        if index is not None:
            by_index[index] = a
        facts.adapters.append(a)
    def adapter(row: dict[str, Any], key: str, where: str) -> Adapter | None:  # noqa: E306
        return by_name.get(r.text(row, key, where))
    for i, row in enumerate(r.rows("NetAdapterBinding")):
        where = f"NetAdapterBinding[{i}]"
        a = adapter(row, "Name", where)
        if a is None:
            continue
        enabled = r.flag(row, "Enabled", where)
        component = r.text(row, "ComponentID", where)
        if component == "ms_msclient":
            a.smb_client = enabled
        elif component == "ms_server":
            a.smb_server = enabled
    for i, row in enumerate(r.rows("NetAdapterAdvancedProperty")):
        where = f"NetAdapterAdvancedProperty[{i}]"
        a = adapter(row, "Name", where)
        keyword = r.text(row, "RegistryKeyword", where)
        values = row.get("RegistryValue")
        value = r.number({"v": values[0] if isinstance(values, list) and values else values}, "v", f"{where}.RegistryValue")
        if a is None or value is None:
            continue
        if keyword in _OFFLOAD_KEYWORDS:
            a.checksum_offload[_OFFLOAD_KEYWORDS[keyword]] = value != 0
        elif keyword == "*JumboPacket" and a.mtu is None:
            a.mtu = value - 14  # the value counts the Ethernet header
        elif keyword == "ReceiveBufferSize":
            facts.vmbus_receive_buffer = value * 1024
        elif keyword == "SendBufferSize":
            facts.vmbus_send_buffer = value * 1024
    for i, row in enumerate(r.rows("NetIPInterface")):
        where = f"NetIPInterface[{i}]"
        a = adapter(row, "InterfaceAlias", where)
        if a is not None:
            a.metric = r.number(row, "InterfaceMetric", where)
            a.mtu = r.number(row, "NlMtu", where) or a.mtu
    for i, row in enumerate(r.rows("NetIPAddress")):
        where = f"NetIPAddress[{i}]"
        a = adapter(row, "InterfaceAlias", where)
        if a is not None:
            address = f"{r.text(row, 'IPAddress', where)}/{r.number(row, 'PrefixLength', where)}"
            try:
                ipaddress.ip_interface(address)
            except ValueError as e:
                raise r.fail(f"{where}.IPAddress", str(e)) from None
            a.addresses.append(address)
    for i, row in enumerate(r.rows("NetRoute")):
        where = f"NetRoute[{i}]"
        a = adapter(row, "InterfaceAlias", where)
        if a is not None:
            a.default_gateway, a.gateway = True, r.text(row, "NextHop", where)
    for i, row in enumerate(r.rows("NetBios")):
        where = f"NetBios[{i}]"
        index = r.number(row, "InterfaceIndex", where)
        if index in by_index:
            by_index[index].netbios = r.number(row, "TcpipNetbiosOptions", where) != 2  # 2: disabled


def _vms(r: _Reader, facts: HostFacts) -> None:
    vms: dict[str, Vm] = {}
    for i, row in enumerate(r.rows("VM")):
        vm = Vm(r.text(row, "Name", f"VM[{i}]"))
        path = r.text(row, "Path", f"VM[{i}]")
        if path:
            vm.files.append(path)
        vms[vm.name] = vm
    for i, row in enumerate(r.rows("VMProcessor")):
        vm = vms.get(r.text(row, "VMName", f"VMProcessor[{i}]"))
        if vm is not None:
            vm.processor_compatibility = bool(r.flag(row, "CompatibilityForMigrationEnabled", f"VMProcessor[{i}]"))
    for i, row in enumerate(r.rows("VMNetworkAdapter")):
        where = f"VMNetworkAdapter[{i}]"
        vm = vms.get(r.text(row, "VMName", where))
        if vm is not None:
            vm.nics.append(VmNic(r.text(row, "SwitchName", where) or None, r.text(row, "MacAddress", where)))
    for i, row in enumerate(r.rows("VMHardDiskDrive")):
        vm = vms.get(r.text(row, "VMName", f"VMHardDiskDrive[{i}]"))
        if vm is not None:
            vm.files.append(r.text(row, "Path", f"VMHardDiskDrive[{i}]"))
    facts.vms = list(vms.values())
