"""`vhdkit netvirt`: load a model (JSON or TOML), show records, reach, move, with --json."""

from __future__ import annotations

import json

from ..test_cli import vhdkit_cmd
from .conftest import MODEL


def netvirt(*args: str):
    return vhdkit_cmd("netvirt", args[0], str(MODEL), *args[1:])


def test_reach_says_how_and_exits_by_the_verdict():
    routed = netvirt("reach", "contoso-web", "contoso-sql")
    assert routed.returncode == 0 and routed.stdout.startswith("ROUTE -> contoso-sql")
    assert "NVGRE VSID 5002, PA 192.0.2.10 -> 192.0.2.11" in routed.stdout
    across = netvirt("reach", "contoso-web", "fabrikam-sql", "--json")
    assert across.returncode == 3
    verdict = json.loads(across.stdout)
    assert (verdict["action"], verdict["delivered"], verdict["destination"]) == ("drop", False, None)
    assert "only in other routing domains: Fabrikam" in verdict["reason"]
    spoof = netvirt("reach", "contoso-web", "10.1.1.12", "--source-ip", "10.1.1.99")
    assert spoof.returncode == 3 and "spoofed source address 10.1.1.99" in spoof.stdout


def test_move_lists_only_the_pa_change():
    moved = json.loads(netvirt("move", "fabrikam-app", "host1", "--json").stdout)
    assert moved["unchanged"] == 6 and len(moved["changed"]) == 1
    change = moved["changed"][0]
    assert {k for k in change["before"] if change["before"][k] != change["after"][k]} == {"ProviderAddress"}
    assert (change["before"]["ProviderAddress"], change["after"]["ProviderAddress"]) == ("192.0.2.11", "192.0.2.10")


def test_records_as_json_and_powershell():
    records = json.loads(netvirt("records", "--json").stdout)
    assert len(records) == 7 and {r["VirtualSubnetID"] for r in records} == {4096, 5001, 5002, 6001}
    lines = netvirt("records", "--powershell").stdout.splitlines()
    assert len(lines) == 7 and all(line.startswith("New-NetVirtualizationLookupRecord ") for line in lines)


def test_a_toml_model_loads_as_the_json_one(tmp_path):
    toml = tmp_path / "model.toml"
    toml.write_text('''
[[logical_networks]]
name = "P"
pa_pool = { subnet = "198.51.100.0/24" }

[[hosts]]
name = "h1"
logical_network = "P"

[[vm_networks]]
name = "T"
logical_network = "P"
encapsulation = "vxlan"
subnets = [{ name = "s", subnet = "10.0.0.0/24", vsid = 7000 }]

[[vms]]
name = "a"
host = "h1"
nics = [{ network = "T", subnet = "s" }]
''')
    shown = json.loads(vhdkit_cmd("netvirt", "show", str(toml), "--json").stdout)
    assert shown["hosts"][0]["pa"] == "198.51.100.1"
    assert shown["vms"][0]["nics"][0]["ca"] == "10.0.0.2"  # .1 is the subnet's gateway
    assert shown["vm_networks"][0]["subnets"][0]["vsid"] == 7000


def test_a_bad_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hosts": [{"name": "h", "logical_network": "nowhere"}]}')
    r = vhdkit_cmd("netvirt", "show", str(bad))
    assert r.returncode != 0 and "no logical network named 'nowhere'" in r.stderr and "Traceback" not in r.stderr
    bad.write_text("{not json")
    r = vhdkit_cmd("netvirt", "records", str(bad))
    assert r.returncode != 0 and "is not valid JSON" in r.stderr
    r = vhdkit_cmd("netvirt", "reach", str(MODEL), "contoso-web", "nobody")
    assert r.returncode != 0 and "no VM named 'nobody'" in r.stderr
