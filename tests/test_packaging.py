"""The wheel holds every package of the source tree: pyproject.toml lists packages by hand (cli/
installs as vhdkit_cli), so a new subpackage left off the list would be missing from a user's
install while every test here, run from the checkout, still passes."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def _source_packages() -> set[str]:
    found = set()
    for top, installed_as in (("vhdkit", "vhdkit"), ("cli", "vhdkit_cli")):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((installed_as, *parts)))
    return found


def test_every_package_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    assert _source_packages() - listed == set(), "packages missing from pyproject.toml"
    assert listed - _source_packages() == set(), "listed packages that do not exist"
