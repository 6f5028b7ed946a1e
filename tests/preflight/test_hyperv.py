"""Hyper-V hosts from the PowerShell export: a healthy pair passes every rule; each rule is broken
by one fact and fixed again; the reader takes ConvertTo-Json's shapes and refuses anything else
with a sentence naming the file and the field; the script asks for what the reader reads."""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import pytest

from vhdkit import preflight
from vhdkit.errors import PreflightError
from vhdkit.preflight.hyperv import SOURCES, powershell_script

from ..test_cli import vhdkit_cmd
from .hyperv_fixture import healthy, pair, rows, write
from .models import netvirt_model

Doc = dict[str, Any]


def check(tmp_path, src: Doc, dst: Doc, *args: str) -> tuple[int, list[dict[str, Any]]]:
    files = [str(write(tmp_path, src)), str(write(tmp_path, dst))]
    done = vhdkit_cmd("preflight", *files, "--json", *args)
    assert done.returncode in (0, 1, 2) and "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)["results"]


def statuses(results, rule: int) -> set[str]:
    return {r["status"] for r in results if r["rule"] == rule}


def test_a_healthy_pair_passes_every_rule(tmp_path):
    src, dst = pair()
    code, results = check(tmp_path, src, dst, "--type", "live", "--rate", "60kpps")
    assert code == 0
    assert {r["rule"] for r in results} == set(range(1, 16))
    assert [r for r in results if r["status"] != "pass" and r["rule"] != 14] == []


def _adapter_row(doc: Doc, section: str, alias: str, key: str = "InterfaceAlias") -> dict[str, Any]:
    return next(r for r in rows(doc, section) if r[key] == alias)


def _advanced(doc: Doc, alias: str, keyword: str) -> dict[str, Any]:
    return next(r for r in rows(doc, "NetAdapterAdvancedProperty") if r["Name"] == alias and r["RegistryKeyword"] == keyword)


def _set(section: str, key: str, value: Any, match: Callable[[dict[str, Any]], bool] = lambda r: True):
    def change(doc: Doc) -> None:
        for r in rows(doc, section):
            if match(r):
                r[key] = value
    return change


# rule, who changes (0 source, 1 destination), the break, the fix, the status broken, options
CASES: list[tuple[int, int, Callable[[Doc], None], Callable[[Doc], None], str, tuple[str, ...]]] = [
    (1, 1, _set("VMSwitch", "Name", "PUBLIC"), _set("VMSwitch", "Name", "Public"), "fail", ()),
    (2, 1, _set("Processor", "Manufacturer", "AuthenticAMD"), _set("Processor", "Manufacturer", "GenuineIntel"),
     "fail", ()),
    (2, 0, _set("Processor", "Name", "Intel(R) Xeon(R) E5-2690 v4"),
     _set("VMProcessor", "CompatibilityForMigrationEnabled", True), "warn", ()),
    (3, 0, _set("NetIPInterface", "InterfaceMetric", 5, lambda r: r["InterfaceAlias"] == "Cluster"),
     _set("NetIPInterface", "InterfaceMetric", 4, lambda r: r["InterfaceAlias"] == "Public"), "warn", ()),
    (4, 1, lambda d: rows(d, "NetAdapter").append({"Name": "Spare", "InterfaceDescription": "Spare NIC", "ifIndex": 9,
                                                   "Status": "Up", "Speed": 10**9, "Virtual": False}),
     _set("NetAdapter", "Status", "Disabled", lambda r: r["Name"] == "Spare"), "warn", ()),
    (5, 1, _set("NetAdapterBinding", "Enabled", False, lambda r: r["Name"] == "Cluster" and r["ComponentID"] == "ms_server"),
     _set("NetAdapterBinding", "Enabled", True, lambda r: r["Name"] == "Cluster"), "fail", ()),
    (6, 1, _set("NetIPAddress", "IPAddress", "10.7.0.12", lambda r: r["InterfaceAlias"] != "Public"),
     lambda d: [r.update(IPAddress=r["IPAddress"].replace("10.7.0", "10.0.1"))
                for r in rows(d, "NetIPAddress") if r["InterfaceAlias"] == "Cluster"], "fail", ()),
    (7, 0, lambda d: (d["VMHost"].update(VirtualMachineMigrationAuthenticationType=0),
                      d["Msv1_0"].update(RestrictSendingNTLMTraffic=2)),
     lambda d: d["VMHost"].update(VirtualMachineMigrationAuthenticationType=1), "fail", ()),
    (8, 1, _set("VMMigrationNetwork", "Priority", 3, lambda r: r["Subnet"] == "10.0.3.0/24"),
     _set("VMMigrationNetwork", "Priority", 1, lambda r: r["Subnet"] == "10.0.3.0/24"), "fail", ()),
    (8, 1, lambda d: rows(d, "VMMigrationNetwork").append({"Subnet": "10.0.2.0/24", "Priority": 3}),
     lambda d: rows(d, "VMMigrationNetwork").pop(), "fail", ()),
    (8, 0, _set("VMMigrationNetwork", "Priority", 3, lambda r: r["Subnet"] == "10.0.3.0/24"),
     _set("VMMigrationNetwork", "Priority", 1, lambda r: r["Subnet"] == "10.0.3.0/24"), "warn", ()),
    (9, 0, _set("NetBios", "TcpipNetbiosOptions", 0, lambda r: r["InterfaceIndex"] == 5),
     _set("NetBios", "TcpipNetbiosOptions", 2, lambda r: r["InterfaceIndex"] == 5), "warn", ()),
    (10, 1, _set("NetIPInterface", "NlMtu", 1500, lambda r: r["InterfaceAlias"] == "LiveMigration"),
     _set("NetIPInterface", "NlMtu", 9000, lambda r: r["InterfaceAlias"] == "LiveMigration"), "fail", ()),
    (11, 1, lambda d: _advanced(d, "LiveMigration", "*TCPChecksumOffloadIPv4").update(RegistryValue=["0"]),
     lambda d: _advanced(d, "LiveMigration", "*TCPChecksumOffloadIPv4").update(RegistryValue=["3"]), "fail", ()),
    (11, 1, lambda d: d.update(TeamingSoftware={"DisplayName": "HP Network Configuration Utility",
                                                 "DisplayVersion": "9.30.0.0"}),
     lambda d: _advanced(d, "VMs", "*IPChecksumOffloadIPv4").update(RegistryValue=["0"]), "warn", ()),
    (12, 1, lambda d: d.update(TeamingSoftware={"DisplayName": "HP Network Configuration Utility",
                                                 "DisplayVersion": "9.30.0.0"}),
     _set("TeamingSoftware", "DisplayVersion", "9.35.0.0"), "fail", ()),
    (12, 1, lambda d: d.update(NetLbfoTeam={"Name": "T1", "TeamingMode": 2, "Members": ["VMs", "Spare"]}),
     _set("NetLbfoTeam", "TeamingMode", 1), "fail", ()),
    (14, 1, lambda d: _advanced(d, "VMs", "*JumboPacket").update(RegistryKeyword="ReceiveBufferSize", RegistryValue=["1024"]),
     lambda d: next(r for r in rows(d, "NetAdapterAdvancedProperty") if r["RegistryKeyword"] == "ReceiveBufferSize")
     .update(RegistryValue=["4096"]), "fail", ("--rate", "200kpps")),
    (15, 1, _set("SmbConnection", "Dialect", "2.1"), _set("SmbConnection", "Dialect", "3.0.2"), "fail",
     ("--type", "live")),
    (15, 0, _set("SmbConnection", "ContinuouslyAvailable", False), _set("SmbConnection", "ContinuouslyAvailable", True),
     "warn", ("--type", "live")),
    (15, 0, _set("VMHardDiskDrive", "Path", r"D:\VMs\web01.vhdx"),
     _set("VMHardDiskDrive", "Path", r"\\fs1\vms\web01\web01.vhdx"), "fail", ("--type", "live")),
]


@pytest.mark.parametrize("rule, who, breaks, fixes, broken, options", CASES,
                         ids=[f"rule{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_rule_broken_then_fixed(tmp_path, rule, who, breaks, fixes, broken, options):
    docs = list(pair())
    breaks(docs[who])
    if rule == 12 and docs[who].get("NetLbfoTeam"):  # the other side's team, in the healthy mode
        docs[1 - who]["NetLbfoTeam"] = {"Name": "T1", "TeamingMode": 1, "Members": ["VMs", "Spare"]}
    if rule == 14:  # both hosts report a buffer; the source's is big enough
        docs[1 - who]["NetAdapterAdvancedProperty"].append(
            {"Name": "VMs", "RegistryKeyword": "ReceiveBufferSize", "RegistryValue": ["4096"]})
    code, results = check(tmp_path, docs[0], docs[1], *options)
    assert broken in statuses(results, rule), [r for r in results if r["rule"] == rule]
    offending = [r for r in results if r["rule"] == rule and r["status"] == broken]
    assert all(r["reason"] for r in offending)
    assert code == (2 if broken == "fail" else 0) or any(r["status"] == "fail" for r in results)
    fixes(docs[who])
    code, results = check(tmp_path, docs[0], docs[1], *options)
    assert statuses(results, rule) == {"pass"}, [r for r in results if r["rule"] == rule]


def test_the_fix_names_the_host_and_the_cmdlet(tmp_path):
    src, dst = pair()
    dst["VMSwitch"]["Name"] = "PUBLIC"
    _, results = check(tmp_path, src, dst)
    bad = next(r for r in results if r["rule"] == 1)
    assert bad["fix"] == 'on HV02: Rename-VMSwitch -Name "PUBLIC" -NewName "Public"'


def test_the_encapsulation_room_on_the_pa_network(tmp_path):
    model = netvirt_model(tmp_path / "model.json", {"HV01": "10.0.3.11", "HV02": "10.0.3.12"}, "nvgre")
    src, dst = pair()
    _, results = check(tmp_path, src, dst, "--netvirt", str(model))
    assert statuses(results, 13) == {"pass"}
    for doc in (src, dst):
        _set("NetIPInterface", "NlMtu", 1500, lambda r: r["InterfaceAlias"] == "LiveMigration")(doc)
    _, results = check(tmp_path, src, dst, "--netvirt", str(model))
    bad = [r for r in results if r["rule"] == 13]
    assert {r["status"] for r in bad} == {"fail"} and "lower the guests' MTU to 1458" in bad[0]["reason"]


def test_a_rate_no_buffer_can_take_fails(tmp_path):
    _, results = check(tmp_path, *pair(), "--rate", "500kpps")
    bad = [r for r in results if r["rule"] == 14]
    assert bad[0]["status"] == "fail" and "4 MB, the useful maximum" in bad[0]["reason"]


# -- the reader -------------------------------------------------------------------------------------

def test_convertto_json_quirks_are_read(tmp_path):
    doc = healthy("HV01", 1)
    assert isinstance(doc["VMHost"], dict) and doc["NetLbfoTeam"] is None  # one object; none at all
    facts = preflight.load(write(tmp_path, doc, utf16=True))  # Out-File's UTF-16 too
    assert facts.host == "HV01" and facts.migration_authentication == "Kerberos"  # an enum as an integer
    lm = facts.adapter("LiveMigration")
    assert lm is not None and lm.mtu == 9000 and lm.speed_mbps == 25_000 and lm.checksum_offload["tcp_ipv6"]
    assert lm.netbios is False and facts.adapter("Public").netbios is True
    assert facts.switches[0].name == "Public" and facts.adapter("VMs").switch == "Public"
    assert facts.migration_networks == ["10.0.3.0/24", "10.0.1.0/24"] and facts.csv
    assert [c.excluded_from_migration for c in facts.cluster_networks] == [False, False, False, True]
    assert facts.vms[0].files == [r"\\fs1\vms\web01", r"\\fs1\vms\web01\Virtual Hard Disks\web01.vhdx"]


def _hostile(doc: Doc, change: Callable[[Doc], Any]) -> Doc:
    change(doc)
    return doc


HOSTILE: list[tuple[str, Callable[[], bytes], str]] = [
    ("truncated", lambda: json.dumps(healthy("HV01", 1)).encode()[:-40], "not JSON"),
    ("deep", lambda: b'{"Schema": "vhdkit-hyperv-facts/1", "VM": ' + b"[" * 5000 + b"]" * 5000 + b"}",
     "nested more than 64 levels"),
    ("huge array", lambda: json.dumps(_hostile(healthy("HV01", 1), lambda d: d.update(
        NetAdapter=[{"Name": f"n{i}"} for i in range(5000)]))).encode(), "NetAdapter: 5000 objects"),
    ("wrong type", lambda: json.dumps(_hostile(healthy("HV01", 1), lambda d: d["NetAdapterBinding"][0].update(
        Enabled="yes"))).encode(), "NetAdapterBinding[0].Enabled: expected true or false"),
    ("unknown section", lambda: json.dumps(_hostile(healthy("HV01", 1), lambda d: d.update(Extra=1))).encode(),
     "Extra: not a section"),
    ("unknown property", lambda: json.dumps(_hostile(healthy("HV01", 1), lambda d: d["VM"][0].update(
        Secret="x"))).encode(), "VM[0]: Secret is not a property"),
    ("object for a list", lambda: json.dumps(_hostile(healthy("HV01", 1), lambda d: d.update(VM="web01"))).encode(),
     "VM[0]: expected an object"),
    ("bad number", lambda: json.dumps(_hostile(healthy("HV01", 1), lambda d: d["NetIPInterface"][0].update(
        NlMtu="jumbo"))).encode(), "NetIPInterface[0].NlMtu: expected a number"),
    ("huge number", lambda: json.dumps(_hostile(healthy("HV01", 1), lambda d: d["NetIPInterface"][0].update(
        NlMtu=10**30))).encode(), "NetIPInterface[0].NlMtu: out of range"),
    ("bad address", lambda: json.dumps(_hostile(healthy("HV01", 1), lambda d: d["NetIPAddress"][0].update(
        IPAddress="999.1.1.1"))).encode(), "NetIPAddress"),
    ("no name", lambda: json.dumps(_hostile(healthy("HV01", 1), lambda d: d.pop("ComputerName"))).encode(),
     "ComputerName: missing"),
    ("bad utf-16", lambda: b"\xff\xfe" + b"{\x00" + b"\x00\xd8" + b"}\x00", "not valid UTF-16"),
    ("too big", lambda: b"[" + b" " * (9 * 1024 * 1024) + b"]", "larger than 8 MiB"),
    ("a list", lambda: b"[1, 2]", "expected a JSON object"),
    ("own schema, wrong type", lambda: json.dumps({"schema": "vhdkit-preflight-host/1", "host": "x", "kind": "linux",
                                                   "adapters": [{"name": "eth0", "mtu": "big"}]}).encode(),
     "adapters[0].mtu must be a whole number"),
]


@pytest.mark.parametrize("label, data, message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_files_get_a_sentence_naming_file_and_field(tmp_path, label, data, message):
    bad = tmp_path / "bad.json"
    bad.write_bytes(data())
    with pytest.raises(PreflightError) as e:
        preflight.load(bad)
    assert str(e.value).startswith(f"{bad}: ") and message in str(e.value), str(e.value)
    good = write(tmp_path, healthy("HV02", 2))
    done = vhdkit_cmd("preflight", str(bad), str(good))
    assert done.returncode == 1 and "Traceback" not in done.stderr and message in done.stderr, done.stderr


# -- the script --------------------------------------------------------------------------------------

def test_the_script_asks_for_exactly_what_the_reader_reads():
    script = powershell_script()
    for section, (expression, properties) in SOURCES.items():
        line = next(l for l in script.splitlines() if l.startswith(f"$facts['{section}']"))
        assert expression in line and line.endswith(f"| Select-Object {', '.join(properties)})")
    assert "ConvertTo-Json -Depth 6" in script and "vhdkit-hyperv-facts/1" in script
    assert set(re.findall(r"\$facts\['(\w+)'\]", script)) == set(SOURCES)
    # what the cmdlets are: the list, each asked for
    for cmdlet in ("Get-VMSwitch", "Get-NetAdapter", "Get-NetAdapterBinding", "Get-NetAdapterAdvancedProperty",
                   "Get-NetIPInterface", "Win32_NetworkAdapterConfiguration", "LmCompatibilityLevel",
                   "RestrictSendingNTLMTraffic", "Get-VMHost", "Get-VMMigrationNetwork", "Get-ClusterNetwork",
                   "MigrationExcludeNetworks", "Get-NetLbfoTeam", "Win32_Processor", "Get-VMProcessor",
                   "Get-SmbServerConfiguration", "*JumboPacket", "*IPChecksumOffloadIPv4", "*UDPChecksumOffloadIPv6"):
        assert cmdlet in script, cmdlet
    printed = vhdkit_cmd("preflight", "collect", "--powershell")
    assert printed.returncode == 0 and printed.stdout.replace("\r\n", "\n") == script.replace("\r\n", "\n")


def test_the_fixture_uses_only_what_the_script_selects():
    doc = healthy("HV01", 1)
    for section, value in doc.items():
        if section in ("Schema", "ComputerName"):
            continue
        for row in value if isinstance(value, list) else [value] if value else []:
            assert set(row) <= set(SOURCES[section][1]), (section, set(row) - set(SOURCES[section][1]))
