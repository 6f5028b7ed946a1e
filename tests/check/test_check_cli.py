"""``vhdkit check`` as CI runs it: exit codes, JSON, JUnit XML (validated against the schema CI
servers read), and the --require policies."""

from __future__ import annotations

import json
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import vhdkit
from vhdkit.ops.check import check, parse_rules
from vhdkit.units import GiB, MiB

from ..test_cli import vhdkit_cmd
from ..vhdx.patching import BAT_GUID, regions

SCHEMA = Path(__file__).with_name("junit.xsd")


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    """clean (dynamic VHDX), leaky (a block nothing references), corrupt (a block past EOF)."""
    clean = tmp_path / "clean.vhdx"
    with vhdkit.create(clean, 64 * MiB, block_size=MiB) as disk:
        disk.pwrite(0, b"a" * MiB)
        disk.pwrite(5 * MiB, b"b" * MiB)
        disk.pwrite(9 * MiB, b"c" * MiB)
    bat = regions(clean.read_bytes())[BAT_GUID][0]
    out = {"clean": clean}
    for name, value in (("leaky", 0), ("corrupt", (1 << 20) << 20 | 6)):
        path = tmp_path / f"{name}.vhdx"
        shutil.copy(clean, path)
        with open(path, "r+b") as f:
            f.seek(bat + 8 * 5)
            f.write(struct.pack("<Q", value))
        out[name] = path
    return out


@pytest.mark.parametrize("names, code", [
    (["clean"], 0), (["leaky"], 3), (["corrupt"], 2), (["clean", "leaky"], 3), (["leaky", "corrupt", "clean"], 2),
])
def test_exit_codes_as_qemu_img_check(images, names, code):
    r = vhdkit_cmd("check", *(str(images[n]) for n in names))
    assert r.returncode == code, r.stdout + r.stderr
    for n in names:
        assert str(images[n]) in r.stdout


def test_an_image_that_cannot_be_checked_exits_1(images, tmp_path):
    r = vhdkit_cmd("check", str(images["corrupt"]), str(tmp_path / "absent.vhdx"))
    assert r.returncode == 1 and "could not be checked" in r.stdout


def test_json_report(images):
    r = vhdkit_cmd("check", "--json", str(images["leaky"]), str(images["clean"]))
    out = json.loads(r.stdout)
    assert out["exit_code"] == r.returncode == 3
    leaky, clean = out["images"]
    assert (leaky["verdict"], leaky["leaks"], leaky["leaked_bytes"]) == ("leaks", 1, MiB)
    assert leaky["findings"][0]["severity"] == "leak" and leaky["findings"][0]["offset"] is not None
    assert (clean["verdict"], clean["findings"]) == ("clean", [])


def test_junit_validates_against_the_schema_one_testcase_per_image_one_failure_per_finding(images, tmp_path):
    import xmlschema
    junit = tmp_path / "report.xml"
    r = vhdkit_cmd("check", "--junit", str(junit), *(str(images[n]) for n in ("clean", "leaky", "corrupt")),
                   str(tmp_path / "absent.vhdx"))
    assert r.returncode == 1
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(junit))
    cases = ET.parse(junit).getroot().findall("./testsuite/testcase")
    assert [Path(c.get("name")).name for c in cases] == ["clean.vhdx", "leaky.vhdx", "corrupt.vhdx", "absent.vhdx"]
    clean, leaky, corrupt, absent = cases
    assert list(clean) == []
    assert [f.get("type") for f in leaky.findall("failure")] == ["leak"]
    corrupt_failures = corrupt.findall("failure")
    assert len(corrupt_failures) == len(check(images["corrupt"]).findings) >= 2
    assert "past the end of the file" in corrupt_failures[0].get("message")
    assert absent.find("error") is not None and absent.find("failure") is None
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "1")


def test_schema_rejects_what_ci_servers_would(tmp_path):
    """The shipped schema is strict enough to mean something."""
    import xmlschema
    schema = xmlschema.XMLSchema(str(SCHEMA))
    bad = tmp_path / "bad.xml"
    bad.write_text('<testsuites><testsuite tests="1"><testcase name="x"/></testsuite></testsuites>')  # no name
    assert not schema.is_valid(str(bad))
    bad.write_text('<testsuites><testsuite name="s" tests="1"><testcase name="x" time="-1"/></testsuite></testsuites>')
    assert not schema.is_valid(str(bad))


def test_policies(tmp_path):
    fixed_vhd = tmp_path / "azure.vhd"
    vhdkit.create(fixed_vhd, 30 * MiB, format="vhd", type="fixed").close()
    assert check(fixed_vhd, policy=["azure"]).exit_code == 0
    odd = tmp_path / "odd.vhd"
    vhdkit.create(odd, 30 * MiB + 512, format="vhd", type="fixed").close()
    report = check(odd, policy=["azure"])
    assert (report.verdict, report.exit_code) == ("policy", 4)  # sound, but not what was required
    [finding] = report.findings
    assert finding.severity == "policy"
    assert finding.structure == "policy" and "whole number of 1 MiB" in finding.message
    dynamic = tmp_path / "d.vhdx"
    vhdkit.create(dynamic, GiB, block_size=8 * MiB, logical_sector_size=4096).close()
    rules_met = ["format=vhdx", "type=dynamic", "size-multiple=1MiB", "max-size=1G", "block-size=8M",
                 "logical-sector-size=4096", "no-parent"]
    assert check(dynamic, policy=rules_met).findings == []
    broken = check(dynamic, policy=["format=vhd", "type=fixed", "max-size=512M", "block-size=32M",
                                     "logical-sector-size=512", "size-multiple=3M"])
    assert len(broken.findings) == 6 and all(f.severity == "policy" for f in broken.findings)
    child = tmp_path / "c.vhdx"
    vhdkit.create(child, parent=dynamic).close()
    assert "differencing" in check(child, policy=["no-parent"]).findings[0].message


@pytest.mark.parametrize("text", ["colour=blue", "format=qcow2", "max-size=-1", "type", "size-multiple=0"])
def test_bad_rules_are_refused_with_a_sentence(text, images):
    with pytest.raises(ValueError):
        parse_rules([text])
    r = vhdkit_cmd("check", "--require", text, str(images["clean"]))
    assert r.returncode == 1 and text.split("=")[0] in r.stderr


# -- verdicts a CI job can tell apart: damage, a broken rule, an unfinished check ----------------

def test_a_broken_rule_is_its_own_verdict_exit_code_and_junit_failure(images, tmp_path):
    junit = tmp_path / "policy.xml"
    r = vhdkit_cmd("check", "--require", "type=fixed", "--json", "--junit", str(junit), str(images["clean"]))
    out = json.loads(r.stdout)
    assert r.returncode == out["exit_code"] == 4
    [image] = out["images"]
    assert (image["verdict"], image["errors"], image["policy"]) == ("policy", 0, 1)
    import xmlschema
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(junit))
    [case] = ET.parse(junit).getroot().findall("./testsuite/testcase")
    assert [f.get("type") for f in case.findall("failure")] == ["policy"] and case.find("error") is None
    # damage beats a broken rule, a broken rule beats leaks, across several images
    r = vhdkit_cmd("check", "--require", "type=fixed", str(images["leaky"]), str(images["clean"]))
    assert r.returncode == 4
    r = vhdkit_cmd("check", "--require", "type=fixed", str(images["corrupt"]), str(images["clean"]))
    assert r.returncode == 2


def test_a_missing_parent_is_incomplete_not_corrupt(tmp_path):
    base, child = tmp_path / "base.vhdx", tmp_path / "child.vhdx"
    vhdkit.create(base, 64 * MiB).close()
    vhdkit.create(child, parent=base).close()
    base.unlink()
    junit = tmp_path / "r.xml"
    r = vhdkit_cmd("check", "--json", "--junit", str(junit), str(child))
    [image] = json.loads(r.stdout)["images"]
    assert r.returncode == 1 and (image["verdict"], image["errors"], image["incomplete"]) == ("incomplete", 0, 1)
    [case] = ET.parse(junit).getroot().findall("./testsuite/testcase")
    assert case.find("failure") is None and case.find("error").get("type") == "incomplete"


def test_strict_makes_a_damaged_copy_fail(tmp_path):
    path = tmp_path / "one-bad-header.vhdx"
    vhdkit.create(path, 64 * MiB).close()
    with open(path, "r+b") as f:  # header 1 damaged; header 2 still good: the image survives
        f.seek(0x10000 + 100)
        f.write(b"\xff")
    relaxed = vhdkit_cmd("check", "--json", str(path))
    assert relaxed.returncode == 0 and json.loads(relaxed.stdout)["images"][0]["warnings"] == 1
    junit = tmp_path / "strict.xml"
    strict = vhdkit_cmd("check", "--strict", "--json", "--junit", str(junit), str(path))
    [image] = json.loads(strict.stdout)["images"]
    assert strict.returncode == 2 and (image["verdict"], image["strict"]) == ("corrupt", True)
    [case] = ET.parse(junit).getroot().findall("./testsuite/testcase")
    assert [f.get("type") for f in case.findall("failure")] == ["warning"]
