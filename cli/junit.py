"""JUnit XML for CI systems (the Jenkins/Ant schema most CI servers read; tests validate against
tests/check/junit.xsd): one testcase per image, one <failure> per error, leak or broken rule (a
test that ran and found the image wanting), one <error> when an image could not be checked or not
completely (a parent missing: the test could not run), warnings in <system-out>."""

from __future__ import annotations

import os
import socket
import time
import xml.etree.ElementTree as ET

from vhdkit.ops.check import Report


def junit_tree(reports: list[Report], suite_name: str = "vhdkit check") -> ET.ElementTree:
    errored = sum(1 for r in reports if r.failure is not None or r.verdict == "incomplete")
    failed = sum(1 for r in reports if r.failure is None and r.verdict != "incomplete" and r.exit_code != 0)
    total_time = sum(r.seconds for r in reports)
    root = ET.Element("testsuites", name=suite_name, tests=str(len(reports)), failures=str(failed),
                      errors=str(errored), time=f"{total_time:.3f}")
    suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(reports)), failures=str(failed),
                          errors=str(errored), skipped="0", time=f"{total_time:.3f}",
                          timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"), hostname=socket.gethostname())
    for report in reports:
        case = ET.SubElement(suite, "testcase", name=report.path, classname=f"vhdkit.check.{report.format or 'unknown'}",
                             time=f"{report.seconds:.3f}")
        if report.failure is not None:
            ET.SubElement(case, "error", message="the image could not be checked",
                          type=report.verdict).text = report.failure
            continue
        for finding in report.findings:
            if finding.severity in ("error", "leak", "policy") or (report.strict and finding.severity == "warning"):
                failure = ET.SubElement(case, "failure", message=finding.message, type=finding.severity)
                failure.text = str(finding)
            elif finding.severity == "incomplete":
                ET.SubElement(case, "error", message=finding.message, type="incomplete").text = str(finding)
        notes = [str(f) for f in report.findings if f.severity == "warning" and not report.strict] + \
            [f"repaired: {r}" for r in report.repairs]
        if notes:
            ET.SubElement(case, "system-out").text = "\n".join(notes)
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: str | os.PathLike[str], reports: list[Report]) -> None:
    junit_tree(reports).write(path, encoding="utf-8", xml_declaration=True)
