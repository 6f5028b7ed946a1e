"""What ordinary commands may not load (specs/architecture.md, "Start-up"): each module here costs
every run several ms. Each command runs in a fresh interpreter of the environment under test, and
reports which of these it loaded. bench/startup.py measures the time itself."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

#: what no ordinary command needs: argparse (help and mistakes only), typing (type checkers only),
#: uuid (vhdkit.guid instead; uuid loads platform, re and enum), enum and re (runtime_types),
#: threading and functools (locks come from _thread: threading loads functools and collections),
#: importlib and warnings (runtime_types.import_module); and for a VHDX, array and collections (BAT
#: pages are memoryviews; array registers with collections.abc) and weakref (_weakref's type)
NOT_LOADED = ("argparse", "typing", "uuid", "enum", "re", "threading", "functools", "importlib", "warnings")
NOT_LOADED_FOR_VHDX = (*NOT_LOADED, "array", "collections", "weakref")

ROOT = Path(__file__).resolve().parent.parent

# What the interpreter had before vhdkit (an editable install's import hook loads re and enum at
# start-up, for instance) is not the jobs' doing.
RUN = """
import sys
before = set(sys.modules)
from vhdkit_cli.main import main
for argv in {jobs!r}:
    try:
        main(argv)
    except SystemExit:
        pass
print([m for m in {unwanted!r} if m in sys.modules and m not in before])
"""


def _python(cwd) -> tuple[list[str], dict[str, str]]:
    """This interpreter without site (-S: no .pth file, so an editable install's import hook loads
    nothing), seeing the packages as installed ones: vhdkit and vhdkit_cli, then the dependencies."""
    packages = cwd / "packages"
    if not packages.exists():
        packages.mkdir()
        (packages / "vhdkit").symlink_to(ROOT / "vhdkit")
        (packages / "vhdkit_cli").symlink_to(ROOT / "cli")
    paths = dict.fromkeys([str(packages), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    return [sys.executable, "-S"], {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _loaded_by(jobs: list[list[str]], cwd, unwanted: tuple[str, ...] = NOT_LOADED) -> list[str]:
    code = RUN.format(jobs=jobs, unwanted=unwanted)
    python, env = _python(cwd)
    r = subprocess.run([*python, "-c", code], capture_output=True, text=True, cwd=cwd, env=env)
    assert r.returncode == 0, r.stderr
    return ast.literal_eval(r.stdout.splitlines()[-1])


@pytest.mark.parametrize("fmt", ["vhdx", "vhd"])
def test_create_info_check_and_convert_load_none_of_it(tmp_path, fmt):
    disk, copy = str(tmp_path / f"d.{fmt}"), str(tmp_path / f"c.{fmt}")
    unwanted = NOT_LOADED_FOR_VHDX if fmt == "vhdx" else NOT_LOADED
    jobs = [["create", disk, "--size", "1G"], ["info", disk], ["check", disk]]
    assert _loaded_by(jobs, tmp_path, unwanted) == []
    # convert copies with a reader thread: threading (with functools and collections) is its work
    loaded = set(_loaded_by([["convert", disk, copy]], tmp_path, unwanted))
    assert loaded == {"threading", "functools"} | ({"collections"} if fmt == "vhdx" else set())
    assert (tmp_path / f"c.{fmt}").exists()  # the jobs ran
    # --json loads json, and json loads re (and re enum, functools, collections): the rest holds
    jobs = [["info", "--json", disk], ["check", "--json", disk]]
    loaded = set(_loaded_by(jobs, tmp_path, unwanted))
    assert loaded == {"re", "enum", "functools"} | ({"collections"} if fmt == "vhdx" else set())


def test_version_and_the_library_root_load_none_of_it(tmp_path):
    assert _loaded_by([["--version"]], tmp_path, NOT_LOADED_FOR_VHDX) == []
    code = f"import sys; before = set(sys.modules); import vhdkit; print([m for m in {NOT_LOADED_FOR_VHDX!r} if m in sys.modules and m not in before])"
    python, env = _python(tmp_path)
    r = subprocess.run([*python, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.stdout.strip() == "[]", r.stderr


def test_help_loads_none_of_it_and_a_mistake_loads_argparse(tmp_path):
    """Help is laid out without argparse (cli/helptext.py); a mistake is argparse's to explain, so
    the guard above can fail."""
    python, env = _python(tmp_path)
    jobs = [["--help"], ["check", "--help"], ["vm", "show", "--help"], ["serve", "--help"]]
    r = subprocess.run([*python, "-c", RUN.format(jobs=jobs, unwanted=NOT_LOADED_FOR_VHDX)],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert "usage: vhdkit check" in r.stdout and ast.literal_eval(r.stdout.splitlines()[-1]) == []
    r = subprocess.run([*python, "-c", RUN.format(jobs=[["check", "--no-such-option"]], unwanted=NOT_LOADED)],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert "vhdkit check: error:" in r.stderr and "argparse" in ast.literal_eval(r.stdout.splitlines()[-1])
