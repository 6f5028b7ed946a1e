"""The preflight report: exit codes (0 nothing fails, 2 a failure, 1 warnings with --strict), the
JSON document as specs/preflight.md describes it, and JUnit XML valid against the schema the
check command's report is held to."""

from __future__ import annotations

import json
from pathlib import Path

import xmlschema

from ..test_cli import vhdkit_cmd
from .hyperv_fixture import pair, rows, write

XSD = Path(__file__).resolve().parent.parent / "check" / "junit.xsd"


def files(tmp_path, src, dst) -> list[str]:
    return [str(write(tmp_path, src)), str(write(tmp_path, dst))]


def test_exit_codes(tmp_path):
    src, dst = pair()
    assert vhdkit_cmd("preflight", *files(tmp_path, src, dst)).returncode == 0
    rows(dst, "NetAdapter").append({"Name": "Spare", "InterfaceDescription": "x", "ifIndex": 9, "Status": "Up"})
    warned = vhdkit_cmd("preflight", *files(tmp_path, src, dst))
    assert warned.returncode == 0 and "WARN   4 unused adapters" in warned.stdout
    assert vhdkit_cmd("preflight", *files(tmp_path, src, dst), "--strict").returncode == 1
    dst["VMSwitch"]["Name"] = "public"
    failed = vhdkit_cmd("preflight", *files(tmp_path, src, dst), "--strict")
    assert failed.returncode == 2 and "1 failed, 1 warnings" in failed.stdout
    assert 'fix: on HV02: Rename-VMSwitch -Name "public" -NewName "Public"' in failed.stdout


def test_the_json_report(tmp_path):
    src, dst = pair()
    dst["VMSwitch"]["Name"] = "public"
    done = vhdkit_cmd("preflight", *files(tmp_path, src, dst), "--json")
    report = json.loads(done.stdout)
    assert set(report) == {"schema", "hosts", "exit_code", "results"}
    assert report["schema"] == "vhdkit-preflight-report/1" and report["hosts"] == ["HV01", "HV02"]
    assert report["exit_code"] == done.returncode == 2
    for r in report["results"]:
        assert set(r) == {"rule", "title", "status", "hosts", "reason", "fix"}
        assert r["status"] in ("pass", "warn", "fail") and 1 <= r["rule"] <= 15 and r["reason"]


def test_junit_validates_and_says_what_failed(tmp_path):
    src, dst = pair()
    dst["VMSwitch"]["Name"] = "public"
    out = tmp_path / "preflight.xml"
    done = vhdkit_cmd("preflight", *files(tmp_path, src, dst), "--junit", str(out))
    assert done.returncode == 2
    xmlschema.XMLSchema(str(XSD)).validate(str(out))
    text = out.read_text()
    assert 'failures="1"' in text and 'type="fail"' in text and "Rename-VMSwitch" in text
