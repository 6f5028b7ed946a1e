"""What ordinary commands may not load (specs/architecture.md, "Start-up"): each module here costs
every run several ms. Each command runs in a fresh interpreter of the environment under test, and
reports which of these it loaded. bench/startup.py measures the time itself."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: what no ordinary command needs: argparse (help and mistakes only), typing (type checkers only),
#: uuid (vhdkit.guid instead; uuid loads platform, re and enum)
NOT_LOADED = ("argparse", "typing", "uuid")

RUN = """
import json, sys
from vhdkit_cli.main import main
for argv in {jobs!r}:
    try:
        main(argv)
    except SystemExit:
        pass
print(json.dumps([m for m in {unwanted!r} if m in sys.modules]))
"""


def _loaded_by(jobs: list[list[str]], cwd) -> list[str]:
    code = RUN.format(jobs=jobs, unwanted=NOT_LOADED)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


@pytest.mark.parametrize("fmt", ["vhdx", "vhd"])
def test_create_info_check_and_convert_load_none_of_it(tmp_path, fmt):
    disk, copy = str(tmp_path / f"d.{fmt}"), str(tmp_path / f"c.{fmt}")
    jobs = [["create", disk, "--size", "1G"], ["info", disk], ["info", "--json", disk], ["check", disk],
            ["check", "--json", disk], ["convert", disk, copy]]
    assert _loaded_by(jobs, tmp_path) == []
    assert (tmp_path / f"c.{fmt}").exists()  # the jobs ran


def test_version_and_the_library_root_load_none_of_it(tmp_path):
    assert _loaded_by([["--version"]], tmp_path) == []
    code = f"import sys, vhdkit; print([m for m in {NOT_LOADED!r} if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.stdout.strip() == "[]", r.stderr


def test_help_still_loads_argparse_and_prints_it(tmp_path):
    """The guard above must be able to fail: help is argparse's, so it shows there."""
    r = subprocess.run([sys.executable, "-c", RUN.format(jobs=[["check", "--help"]], unwanted=NOT_LOADED)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert "usage: vhdkit check" in r.stdout and json.loads(r.stdout.splitlines()[-1]) == ["argparse"]
